"""SUMO bridge speed, and fixed-time vs MaxPressure baselines.

Part ``bridge`` (writes ``benchmarks/results/sumo_bridge.json``): one 240-decision grid4x4 episode
under the fixed-time schedule, timed three ways on the same seed and actions (so the simulated
traffic is identical):

* ``sim only``: in-process libsumo, the net's own programs, one ``simulationStep`` per 15 s and
  no reads (a floor, for context);
* ``raw libsumo``: in-process :class:`envs_jax.sumo.worker.Simulation`: the bridge's control
  (yellow / green) and per-lane reads, without processes;
* ``bridge``: :class:`envs_jax.sumo.bridge.SumoEnv` with 1 and 2 workers (observation, reward,
  mask context and IPC included).

Overhead = (bridge with 1 worker - raw libsumo) / raw libsumo. Decisions/s count decisions of
all simulations together (2 workers: 2 x 240 per episode).

Part ``baselines`` (writes ``benchmarks/results/sumo_baselines.json`` and the ``## SUMO``
section of ``benchmarks/README.md``): fixed-time and MaxPressure on grid4x4 and cologne8, one
3600-s episode per seed, mean and std over seeds of average delay, trip time and waiting time.

Usage::

    python benchmarks/sumo_bridge.py [--part bridge|baselines|all] [--repeats 3] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from readme_sections import write_readme_section

import envs_jax
from envs_jax.sumo.baselines import FixedTime, MaxPressure, evaluate, fixed_time_actions
from envs_jax.sumo.features import LayoutIndex
from envs_jax.sumo.plan import DECISION_SECONDS, build_plan
from envs_jax.sumo.scenarios import resco_scenario
from envs_jax.sumo.standardize import standardize_net
from envs_jax.sumo.worker import Simulation

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine_info() -> dict[str, Any]:
    """Device, versions and load, for the JSON files."""
    import importlib.metadata as md

    import jax

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "device": f"CPU: {cpu}, {os.cpu_count()} cores (SUMO runs on the host CPU)",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "libsumo": md.version("libsumo"),
        "sumo_rl": md.version("sumo-rl"),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def _worker_cpu(pids: list[int | None]) -> float:
    """CPU seconds (user + system) used so far by the given processes (Linux /proc)."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _run(fn: Callable[[], Any], pids: list[int | None]) -> tuple[float, float]:
    """``(wall s, cpu s)`` of one call; cpu = this process + the worker processes."""
    c0, w0, t0 = time.process_time(), _worker_cpu(pids), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, time.process_time() - c0 + _worker_cpu(pids) - w0


def bench_bridge(repeats: int, seed: int = 42) -> dict[str, Any]:
    """Time one grid4x4 episode: sim only, raw libsumo, and the bridge with 1 and 2 workers.

    The modes are interleaved (round-robin over repeats) so that load changes on a shared
    machine hit them alike; CPU seconds are reported beside wall seconds.
    """
    import libsumo

    sc = resco_scenario("grid4x4")
    layout = standardize_net(sc.net_file)
    index = LayoutIndex.from_layout(layout)
    decisions = int(sc.episode_seconds / DECISION_SECONDS)
    schedule = [fixed_time_actions(index.phase_avail, k) for k in range(decisions)]
    tmp = tempfile.mkdtemp(prefix="espark-bench-")

    def sim_only() -> None:
        libsumo.start(
            [
                "sumo",
                "-n",
                sc.net_file,
                "-r",
                sc.route_files[0],
                "--no-step-log",
                "--no-warnings",
                "--time-to-teleport",
                "-1",
                "--seed",
                str(seed),
            ]
        )
        for k in range(decisions):
            libsumo.simulationStep((k + 1) * DECISION_SECONDS)
        libsumo.close()

    sim = Simulation(build_plan(sc, layout, index, decisions, os.path.join(tmp, "raw.xml")))

    def raw() -> None:
        sim.reset(seed)
        for a in schedule:
            sim.step(a)

    def bridged(env: Any) -> Callable[[], None]:
        def episode() -> None:
            env.reset(seed)
            for a in schedule:
                env.mask_context()
                env.step(np.broadcast_to(a, (env.n_envs, len(a))))

        return episode

    envs = {w: envs_jax.make("sumo/grid4x4", n_envs=w) for w in (1, 2)}
    modes = {
        "sim only (native programs, no reads)": (sim_only, lambda: [], 0, 1),
        "raw libsumo (control + reads)": (raw, lambda: [], 0, 1),
        **{f"bridge, {w} worker(s)": (bridged(e), e.worker_pids, w, w) for w, e in envs.items()},
    }
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in modes}
    try:
        for _ in range(repeats):
            for name, (fn, pids, _, _) in modes.items():
                samples[name].append(_run(fn, pids()))
    finally:
        for e in envs.values():
            e.close()
    rows: dict[str, Any] = {}
    for name, (_, _, workers, n_sims) in modes.items():
        wall = statistics.median(s[0] for s in samples[name])
        cpu = statistics.median(s[1] for s in samples[name])
        rows[name] = {
            "workers": workers,
            "wall_s": [s[0] for s in samples[name]],
            "cpu_s": [s[1] for s in samples[name]],
            "median_wall_s": wall,
            "median_cpu_s": cpu,
            "decisions_per_s": n_sims * decisions / wall,
            "decisions_per_cpu_s": n_sims * decisions / cpu,
        }
    raw_r, one, two = (
        rows["raw libsumo (control + reads)"],
        rows["bridge, 1 worker(s)"],
        rows["bridge, 2 worker(s)"],
    )
    return {
        "scenario": "sumo/grid4x4",
        "decisions_per_episode": decisions,
        "seed": seed,
        "repeats": repeats,
        "controller": "fixed-time schedule",
        "rows": rows,
        "bridge_overhead_wall": (one["median_wall_s"] - raw_r["median_wall_s"])
        / raw_r["median_wall_s"],
        "bridge_overhead_cpu": (one["median_cpu_s"] - raw_r["median_cpu_s"])
        / raw_r["median_cpu_s"],
        "speedup_2_vs_1_workers": two["decisions_per_s"] / one["decisions_per_s"],
    }


def bench_baselines(seeds: list[int]) -> dict[str, Any]:
    """Fixed-time and MaxPressure on grid4x4 and cologne8; one episode per seed."""
    out: dict[str, Any] = {}
    for scenario in ("sumo/grid4x4", "sumo/cologne8"):
        with envs_jax.make(scenario, n_envs=min(len(seeds), 3)) as env:
            for ctrl in (FixedTime(), MaxPressure()):
                t0 = time.perf_counter()
                res = evaluate(env, ctrl, seeds)
                res["wall_s"] = time.perf_counter() - t0
                out[f"{scenario} | {ctrl.name}"] = res
    return out


def bridge_table(res: dict[str, Any]) -> str:
    lines = [
        "| run | workers | episode wall s | episode CPU s | decisions/s (wall) "
        "| decisions per CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["rows"].items():
        lines.append(
            f"| {name} | {r['workers'] or '-'} | {r['median_wall_s']:.2f} | "
            f"{r['median_cpu_s']:.2f} | {r['decisions_per_s']:.0f} | "
            f"{r['decisions_per_cpu_s']:.0f} |"
        )
    lines.append("")
    lines.append(
        "Bridge overhead vs raw libsumo (1 worker): "
        f"{100 * res['bridge_overhead_cpu']:+.1f} % CPU, "
        f"{100 * res['bridge_overhead_wall']:+.1f} % wall; 2 workers vs 1: "
        f"{res['speedup_2_vs_1_workers']:.2f}x decisions/s (wall). "
        f"Medians of {res['repeats']} runs."
    )
    return "\n".join(lines)


_METRICS = ("avg_delay", "avg_trip_time", "avg_waiting_time")


def baselines_table(res: dict[str, Any]) -> str:
    lines = [
        "| scenario | controller | avg delay s | avg trip time s | avg waiting time s | episodes |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in res.items():
        scen, ctrl = key.split(" | ")
        cells = [f"{r['mean'][k]:.1f} ± {r['std'][k]:.1f}" for k in _METRICS]
        lines.append(f"| {scen} | {ctrl} | " + " | ".join(cells) + f" | {len(r['seeds'])} |")
    return "\n".join(lines)


def _ippo_rows_and_note() -> tuple[list[str], str]:
    """IPPO rows for the baselines table and their note, from ``results/sumo_ippo.json`` (written
    by ``benchmarks/sumo_ippo.py``); nothing when that file does not exist."""
    path = RESULTS / "sumo_ippo.json"
    if not path.exists():
        return [], ""
    sys.path.insert(0, str(HERE))
    import sumo_ippo

    res = json.loads(path.read_text())
    return sumo_ippo.table_rows(res), sumo_ippo.note(res)


def readme_section() -> str:
    """The ``## SUMO`` section of benchmarks/README.md, from whichever result files exist."""
    parts = []
    bridge_file, base_file = RESULTS / "sumo_bridge.json", RESULTS / "sumo_baselines.json"
    if base_file.exists():
        base = json.loads(base_file.read_text())
        seeds = next(iter(base["results"].values()))["seeds"]
        ippo_rows, ippo_note = _ippo_rows_and_note()
        table = "\n".join([baselines_table(base["results"]), *ippo_rows])
        parts.append(
            "### Fixed-time, MaxPressure and IPPO\n\n"
            "Fixed-time (30 s per available phase, in the listed order) and MaxPressure through "
            f"the bridge, one 3600-s episode per SUMO seed {seeds}, mean ± std over seeds (s). "
            "Delay includes never-inserted vehicles (`envs_jax/sumo/metrics.py`). eSpark rows are "
            "not measured yet."
            f"\n\n{table}\n\n"
            f"Fixed-time / MaxPressure: {base['device']}; load average "
            f"{base['load_avg_1_5_15']} before, {base['load_avg_after']} after (machine shared "
            f"with other work). Command: `{base['command']}`. "
            "Raw: `results/sumo_baselines.json`." + (f"\n\n{ippo_note}" if ippo_note else "")
        )
    if bridge_file.exists():
        br = json.loads(bridge_file.read_text())
        parts.append(
            "### Bridge speed\n\n"
            f"One {br['decisions_per_episode']}-decision {br['scenario']} episode, fixed-time "
            f"schedule, seed {br['seed']}, the modes interleaved; target: bridge overhead under "
            "10 % of the simulation.\n\n"
            f"{bridge_table(br)}\n\n"
            f"{br['device']}; load average {br['load_avg_1_5_15']} before, "
            f"{br['load_avg_after']} after: the 2-core machine was shared with other work, so "
            "absolute times are 3-6x those of an idle core and 2 workers cannot scale; compare "
            "rows, not machines. "
            f"Command: `{br['command']}`. Raw: `results/sumo_bridge.json`."
        )
    return "\n\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("bridge", "baselines", "all"), default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part in ("bridge", "all"):
        info = machine_info()
        res = bench_bridge(args.repeats)
        res.update(info, load_avg_after=[round(x, 2) for x in os.getloadavg()])
        (RESULTS / "sumo_bridge.json").write_text(json.dumps(res, indent=2))
        print(bridge_table(res))
    if args.part in ("baselines", "all"):
        info = machine_info()
        res = bench_baselines(args.seeds)
        payload = {**info, "load_avg_after": [round(x, 2) for x in os.getloadavg()], "results": res}
        (RESULTS / "sumo_baselines.json").write_text(json.dumps(payload, indent=2))
        print(baselines_table(res))
    write_readme_section("## SUMO", readme_section())


if __name__ == "__main__":
    main()
