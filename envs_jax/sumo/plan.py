"""What one SUMO worker simulates: a scenario's files and time window, and the worker's plan.

:class:`Scenario` names the net and route files of a scenario; :func:`build_plan` turns it and
the standardised layout into the plan dict that :class:`envs_jax.sumo.worker.Simulation` runs
(the ``sumo`` command line, the 15-s decision timing, the traffic-light programs and the lanes
to measure). The bridge sends it to every worker; a benchmark can run it in-process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from envs_jax.sumo.features import LayoutIndex
from envs_jax.sumo.standardize import PROGRAM_ID, NetLayout

DECISION_SECONDS = 15.0
YELLOW_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Files and time window of a SUMO scenario.

    Attributes:
        name: registry name, e.g. ``"sumo/grid4x4"``.
        net_file: the ``.net.xml``.
        route_files: route / trip files, loaded together.
        begin: simulation time of the first decision (e.g. 25200 for Cologne8).
        episode_seconds: episode length; a multiple of 15.
        data_source: where the files come from (goes into ``EnvSpec.data_source``).
        sumo_args: extra ``sumo`` command-line options.
    """

    name: str
    net_file: str
    route_files: tuple[str, ...]
    begin: float = 0.0
    episode_seconds: float = 3600.0
    data_source: str = ""
    sumo_args: tuple[str, ...] = ()


def build_plan(
    scenario: Scenario,
    layout: NetLayout,
    index: LayoutIndex,
    decisions: int,
    tripinfo_file: str,
    time_to_teleport: float = -1.0,
) -> dict[str, Any]:
    """What one worker runs: the plan dict of :class:`envs_jax.sumo.worker.Simulation`.

    Also lets a caller run a :class:`~envs_jax.sumo.worker.Simulation` in-process (the
    benchmark's raw-libsumo baseline) with exactly the bridge's settings.
    """
    sc = scenario
    cmd = [
        "sumo",
        "-n",
        sc.net_file,
        "-r",
        ",".join(sc.route_files),
        "-b",
        f"{sc.begin:g}",
        "--no-step-log",
        "--no-warnings",
        "--duration-log.disable",
        "--time-to-teleport",
        f"{time_to_teleport:g}",
        "--tripinfo-output",
        tripinfo_file,
        "--tripinfo-output.write-unfinished",
        "--tripinfo-output.write-undeparted",
        *sc.sumo_args,
    ]
    return {
        "sumo_cmd": cmd,
        "begin": sc.begin,
        "decisions": int(decisions),
        "decision_seconds": DECISION_SECONDS,
        "yellow_seconds": YELLOW_SECONDS,
        "program_id": PROGRAM_ID,
        "tls": [
            {"id": it.tls_id, "program": it.program(), "initial_phase": it.initial_phase}
            for it in layout.intersections
        ],
        "lanes": list(index.lanes),
        "n_incoming": index.n_incoming,
    }
