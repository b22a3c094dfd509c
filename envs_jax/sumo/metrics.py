"""Episode metrics from a SUMO tripinfo file (RESCO conventions, never-inserted vehicles included).

The bridge runs SUMO with ``--tripinfo-output.write-unfinished`` and
``--tripinfo-output.write-undeparted``, so the file holds one ``<tripinfo>`` per vehicle whose
scheduled departure fell inside the episode:

* *finished* vehicles (``arrival >= 0``);
* *unfinished* ones, still driving at the end (``arrival = -1``, ``duration`` = time so far);
* *undeparted* ones, never inserted (``depart = -1``, ``departDelay`` = end - scheduled depart).

Definitions (seconds):

* **average delay** = mean of ``timeLoss + departDelay`` over all three groups. An undeparted
  vehicle contributes its whole wait for insertion; this is RESCO's correction for vehicles that
  never entered, computed exactly from SUMO instead of from the route file.
* **average trip time** = mean ``duration`` over departed vehicles (finished and unfinished).
* **average waiting time** = mean ``waitingTime`` (time at speed < 0.1 m/s) over departed vehicles.

A mean over no vehicle is NaN.
"""

from __future__ import annotations

import dataclasses
import math
import os
import xml.etree.ElementTree as ET


@dataclasses.dataclass(frozen=True)
class TripMetrics:
    """Episode metrics of one simulation (see the module docstring for definitions)."""

    avg_delay: float
    avg_trip_time: float
    avg_waiting_time: float
    n_finished: int
    n_unfinished: int
    n_undeparted: int

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict."""
        return dataclasses.asdict(self)


METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TripMetrics))


def _mean(total: float, count: int) -> float:
    return total / count if count else math.nan


def parse_tripinfo(path: str | os.PathLike) -> TripMetrics:
    """Read a tripinfo XML file and compute :class:`TripMetrics`."""
    n_fin = n_unfin = n_undep = 0
    delay = trip = wait = 0.0
    for _, el in ET.iterparse(os.fspath(path), events=("end",)):
        if el.tag != "tripinfo":
            continue
        depart_delay = float(el.get("departDelay", "0"))
        if float(el.get("depart", "-1")) < 0:
            if depart_delay >= 0:  # scheduled inside the episode but never inserted
                n_undep += 1
                delay += depart_delay
        else:
            if float(el.get("arrival", "-1")) < 0:
                n_unfin += 1
            else:
                n_fin += 1
            delay += float(el.get("timeLoss", "0")) + depart_delay
            trip += float(el.get("duration", "0"))
            wait += float(el.get("waitingTime", "0"))
        el.clear()
    departed = n_fin + n_unfin
    return TripMetrics(
        avg_delay=_mean(delay, departed + n_undep),
        avg_trip_time=_mean(trip, departed),
        avg_waiting_time=_mean(wait, departed),
        n_finished=n_fin,
        n_unfinished=n_unfin,
        n_undeparted=n_undep,
    )
