"""One libsumo simulation, driven by :mod:`envs_jax.sumo.bridge` from a separate process.

The bridge starts this file as a script (``python worker.py <fd> <parent pid>``) so that a worker
imports only the standard library, numpy and libsumo: no jax, and not the parent's main module.
It talks over a socket with ``multiprocessing.connection`` messages:

=============================  =================================================================
request                        reply
=============================  =================================================================
``("init", plan)``             ``("ok", pid)``: ``plan`` is :meth:`Simulation.__init__`'s dict
``("reset", seed)``            ``("ok", (lane_stats, time))``: starts a fresh episode
``("step", actions)``          ``("ok", (lane_stats, time, finished))``: one decision
``("close", None)``            ``("ok", None)``, then the process exits
=============================  =================================================================

``lane_stats`` is ``float32 [n_lanes, len(LANE_FEATURES)]``. When the last decision of an episode
is reached the simulation is closed, which writes the tripinfo file, and ``finished`` is True.
Any exception is answered with ``("error", traceback_text)``. The worker exits by itself when
its parent dies (``PR_SET_PDEATHSIG`` on Linux, and a parent-pid check while idle).

:class:`Simulation` also runs in-process (the benchmark's "raw libsumo" baseline).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any, Sequence

import numpy as np

# Per-lane measurements, in column order. Outgoing-only lanes fill the first two columns only.
LANE_FEATURES: tuple[str, ...] = (
    "vehicles",
    "halting",
    "occupancy",
    "waiting_time",
    "mean_length",
    "flow",
)


class Simulation:
    """A libsumo simulation with the standardised programs installed and 15-s decisions.

    ``plan`` keys: ``sumo_cmd`` (list: the ``sumo`` command line without ``--seed``),
    ``begin`` (s), ``decisions`` (per episode), ``decision_seconds``, ``yellow_seconds``,
    ``tls`` (list of ``{"id", "program": [(state, duration), ...], "initial_phase"}``),
    ``lanes`` (lane ids to measure, incoming lanes first), ``n_incoming`` (how many of them are
    incoming: those get all features, including ``flow`` = vehicles that left the lane since
    the previous decision).
    """

    def __init__(self, plan: dict[str, Any]) -> None:
        import libsumo

        self.ls = libsumo
        self.plan = plan
        self.tls_ids: list[str] = [t["id"] for t in plan["tls"]]
        self.lanes: list[str] = list(plan["lanes"])
        self.n_incoming = int(plan["n_incoming"])
        self.running = False
        self.decision = 0
        self.phase = np.zeros(len(self.tls_ids), dtype=np.int64)
        self._prev_ids: list[set[str]] = [set() for _ in range(self.n_incoming)]

    @property
    def time(self) -> float:
        """Simulation time at the current decision."""
        return float(self.plan["begin"]) + self.decision * float(self.plan["decision_seconds"])

    def reset(self, seed: int) -> tuple[np.ndarray, float]:
        """Start a new episode with SUMO seed ``seed``; returns the first measurement."""
        self.close()
        ls = self.ls
        ls.start([*self.plan["sumo_cmd"], "--seed", str(int(seed))])
        self.running = True
        self.decision = 0
        tl = ls.trafficlight
        for i, t in enumerate(self.plan["tls"]):
            phases = [tl.Phase(float(d), s) for s, d in t["program"]]
            tl.setProgramLogic(t["id"], tl.Logic(self.plan["program_id"], 0, 0, phases))
            tl.setProgram(t["id"], self.plan["program_id"])
            self.phase[i] = int(t["initial_phase"])
            tl.setPhase(t["id"], 2 * int(self.phase[i]))
        self._prev_ids = [set() for _ in range(self.n_incoming)]
        return self.measure(), self.time

    def step(self, actions: Sequence[int]) -> tuple[np.ndarray, float, bool]:
        """One decision: 5 s yellow where the phase changes, then 10 s of the chosen greens."""
        if not self.running:
            raise RuntimeError("step() without a running episode: reset first")
        ls, tl = self.ls, self.ls.trafficlight
        actions = np.asarray(actions, dtype=np.int64)
        t0 = self.time
        changed = np.flatnonzero(actions != self.phase)
        if changed.size:
            for i in changed:
                tl.setPhase(self.tls_ids[i], 2 * int(self.phase[i]) + 1)
            ls.simulationStep(t0 + float(self.plan["yellow_seconds"]))
        for i, a in enumerate(actions):
            tl.setPhase(self.tls_ids[i], 2 * int(a))  # also restarts the green's timer when held
        self.decision += 1
        ls.simulationStep(self.time)
        self.phase[:] = actions
        stats = self.measure()
        finished = self.decision >= int(self.plan["decisions"])
        if finished:
            self.close()
        return stats, self.time, finished

    def measure(self) -> np.ndarray:
        """``float32 [n_lanes, len(LANE_FEATURES)]`` for the current simulation step."""
        lane = self.ls.lane
        lanes, incoming = self.lanes, self.lanes[: self.n_incoming]
        out = np.zeros((len(lanes), len(LANE_FEATURES)), dtype=np.float32)
        out[:, 0] = [lane.getLastStepVehicleNumber(ln) for ln in lanes]
        out[:, 1] = [lane.getLastStepHaltingNumber(ln) for ln in lanes]
        n = self.n_incoming
        out[:n, 2] = [lane.getLastStepOccupancy(ln) for ln in incoming]
        out[:n, 3] = [lane.getWaitingTime(ln) for ln in incoming]
        out[:n, 4] = [lane.getLastStepLength(ln) for ln in incoming]
        ids = [set(lane.getLastStepVehicleIDs(ln)) for ln in incoming]
        out[:n, 5] = [len(prev - cur) for prev, cur in zip(self._prev_ids, ids)]
        self._prev_ids = ids
        return out

    def close(self) -> None:
        """Close the running simulation (this writes the tripinfo file)."""
        if self.running:
            self.running = False
            self.ls.close()


def _watch_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when its parent dies; otherwise rely on the idle check."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def serve(conn: Any, parent_pid: int) -> None:
    """Answer requests on ``conn`` until ``close`` or until the parent goes away."""
    sim: Simulation | None = None
    while True:
        while not conn.poll(1.0):
            if os.getppid() != parent_pid:
                return
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if cmd == "init":
                sim = Simulation(arg)
                reply: Any = os.getpid()
            elif cmd == "reset":
                reply = sim.reset(int(arg))
            elif cmd == "step":
                reply = sim.step(arg)
            elif cmd == "close":
                if sim is not None:
                    sim.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown worker command {cmd!r}")
            conn.send(("ok", reply))
        except Exception:  # reported to the parent, which raises it there
            conn.send(("error", traceback.format_exc()))


def main(argv: list[str]) -> None:
    """Script entry point: ``worker.py <socket fd> <parent pid>``."""
    from multiprocessing.connection import Connection

    fd, parent_pid = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    _watch_parent(parent_pid)
    conn = Connection(fd)
    try:
        serve(conn, parent_pid)
    finally:
        conn.close()


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == here:
        sys.path.pop(0)  # sibling modules must not shadow top-level ones
    main(sys.argv)
