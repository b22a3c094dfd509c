"""The SUMO bridge: ``B`` libsumo simulations in worker processes, numpy in and out.

``SumoEnv`` keeps the :class:`~envs_jax.core.HostEnv` contract (the trainer drives it; shapes
are fixed, ``I`` = intersections = agents)::

    env = envs_jax.make("sumo/grid4x4", n_envs=B)  # or SumoEnv(scenario, n_envs=B)
    with env:
        obs, state = env.reset(seeds)       # seeds: B ints; obs float32 [B, I, 72]
        avail = env.avail_actions           # bool [B, I, 8]: apply in training AND evaluation
        ctx = env.mask_context()            # MaskContext of numpy arrays [B, ...]
        obs, reward, done, info = env.step(actions)
        # actions int [B, I]; reward float32 [B, I]; done bool [B]

* One decision is 15 s: where an intersection changes phase it shows the old phase's yellow for
  5 s, then the chosen green for 10 s; a kept phase stays green 15 s. An episode is
  ``episode_seconds / 15`` decisions (240 for 3600 s), the same for every simulation, so ``done``
  is all False until the last decision and then all True; call ``reset`` again to go on.
* ``reward = -info["components"]["stopped"]`` (minus the halted vehicles on each intersection's
  incoming lanes: higher is better). See :mod:`envs_jax.sumo.features` for the observation and
  components, :mod:`envs_jax.sumo.metrics` for the episode metrics.
* ``info``: ``components`` (dict of ``[B, I]``), ``time`` (``[B]`` simulation seconds),
  ``avail`` (``[B, I, 8]``), ``restarted`` (``bool [B]``: a worker died during this call and was
  replaced), ``worker_restarts`` (``int [B]``, cumulative) and, at the last decision,
  ``metrics`` (dict of ``[B]``: ``avg_delay``, ``avg_trip_time``, ``avg_waiting_time``,
  ``n_finished``, ``n_unfinished``, ``n_undeparted``).
* Actions must be available phases; anything else raises ``ValueError``.

Workers (:mod:`envs_jax.sumo.worker`) are fresh Python processes, one simulation each. A worker
that dies or hangs is replaced: the new one resets with the same seed and replays the episode's
actions (SUMO is deterministic), so the batch continues exactly where it was; this is reported by
a ``RuntimeWarning`` and the counters above, and a worker that keeps dying raises
:class:`SumoWorkerError`. Workers never outlive the environment: ``close()`` (also called by the
context manager, ``__del__`` and an ``atexit`` hook; ``SIGTERM`` is turned into ``SystemExit``
when no handler was installed), and each worker also exits when its parent process dies (on
Linux, when the *thread* that built the environment ends: build it in a long-lived thread).
Workers run in their own session, so Ctrl-C in a terminal reaches only the parent; an interrupted
call leaves the environment needing ``reset``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from typing import Any, Sequence

import numpy as np

from envs_jax.core import EnvSpec, MaskContext
from envs_jax.sumo import deps, features, worker_handle
from envs_jax.sumo.features import LayoutIndex, Measurement
from envs_jax.sumo.metrics import METRIC_NAMES, parse_tripinfo
from envs_jax.sumo.plan import DECISION_SECONDS, YELLOW_SECONDS, Scenario, build_plan
from envs_jax.sumo.standardize import NetLayout, standardize_net
from envs_jax.sumo.worker_handle import SumoWorkerError, WorkerDied, WorkerHandle, close_all

__all__ = [
    "DECISION_SECONDS",
    "YELLOW_SECONDS",
    "Scenario",
    "SumoEnv",
    "SumoState",
    "SumoWorkerError",
    "build_plan",
    "close_all",
]


@dataclasses.dataclass
class SumoState:
    """Host-side state after ``reset``/``step`` (what :meth:`SumoEnv.mask_context` reads).

    Attributes:
        step: decisions taken in this episode.
        time: ``[B]`` simulation time in seconds.
        phase: ``int32 [B, I]`` current phase.
        green_time: ``float32 [B, I]`` seconds the current phase has been green.
        measurement: the aggregated lane measurements.
    """

    step: int
    time: np.ndarray
    phase: np.ndarray
    green_time: np.ndarray
    measurement: Measurement


class SumoEnv:
    """A batch of ``n_envs`` SUMO simulations of one scenario (API in the module docstring).

    Args:
        scenario: the files and time window.
        n_envs: ``B``, the number of simulations (one worker process each).
        episode_seconds: override the scenario's episode length (a multiple of 15; e.g. short
            episodes for tests).
        time_to_teleport: SUMO's ``--time-to-teleport`` (-1: never teleport stuck vehicles).
        step_timeout: seconds to wait for a worker's answer before treating it as hung.
        max_restarts: consecutive restarts of one worker within one call before giving up.
    """

    def __init__(
        self,
        scenario: Scenario,
        n_envs: int = 1,
        *,
        episode_seconds: float | None = None,
        time_to_teleport: float = -1.0,
        step_timeout: float = 300.0,
        max_restarts: int = 2,
    ) -> None:
        if not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        seconds = float(scenario.episode_seconds if episode_seconds is None else episode_seconds)
        decisions = seconds / DECISION_SECONDS
        if seconds <= 0 or decisions != int(decisions):
            raise ValueError(
                f"episode_seconds must be a positive multiple of {DECISION_SECONDS:g}, "
                f"got {seconds:g}"
            )
        deps.require("libsumo", "sumolib")
        for f in (scenario.net_file, *scenario.route_files):
            if not os.path.isfile(f):
                raise FileNotFoundError(f"scenario {scenario.name}: file not found: {f}")
        self.scenario = scenario
        self.n_envs = int(n_envs)
        self.decisions = int(decisions)
        self.episode_seconds = seconds
        self.step_timeout = float(step_timeout)
        self.max_restarts = int(max_restarts)
        self.layout: NetLayout = standardize_net(scenario.net_file)
        self.index = LayoutIndex.from_layout(self.layout)
        self.spec: EnvSpec = features.make_spec(
            scenario.name, self.index, self.decisions, data_source=scenario.data_source
        )
        self._tmp = tempfile.mkdtemp(prefix="espark-sumo-")
        self._closed = False
        self._state: SumoState | None = None
        self._seeds = np.zeros(self.n_envs, dtype=np.int64)
        self._history: list[np.ndarray] = []
        self.restarts = np.zeros(self.n_envs, dtype=np.int64)
        self._workers = [
            WorkerHandle(
                b,
                build_plan(
                    scenario,
                    self.layout,
                    self.index,
                    self.decisions,
                    self.tripinfo_file(b),
                    time_to_teleport,
                ),
            )
            for b in range(self.n_envs)
        ]
        worker_handle.track(self)
        try:
            for w in self._workers:
                w.start()
            for w in self._workers:
                try:
                    w.recv(self.step_timeout)
                except WorkerDied as err:
                    raise SumoWorkerError(
                        f"SUMO worker {w.slot} failed to start ({err}); see its output above"
                    ) from None
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------- setup
    def tripinfo_file(self, b: int) -> str:
        """Path of simulation ``b``'s tripinfo file (complete once its episode is done)."""
        return os.path.join(self._tmp, f"tripinfo_{b}.xml")

    # ------------------------------------------------------------------------------ interface
    @property
    def n_agents(self) -> int:
        """Intersections per simulation."""
        return self.spec.n_agents

    @property
    def phase_avail(self) -> np.ndarray:
        """``bool [I, 8]``: the valid phases of each intersection (static)."""
        return self.index.phase_avail.copy()

    @property
    def avail_actions(self) -> np.ndarray:
        """``bool [B, I, 8]``: the valid actions (mask with it in training and evaluation)."""
        return np.broadcast_to(
            self.index.phase_avail, (self.n_envs, *self.index.phase_avail.shape)
        ).copy()

    @property
    def state(self) -> SumoState | None:
        """The state after the last ``reset``/``step`` (None before the first reset)."""
        return self._state

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (None for a stopped one)."""
        return [w.pid for w in self._workers]

    def reset(self, seeds: int | Sequence[int] | np.ndarray) -> tuple[np.ndarray, SumoState]:
        """Start a new episode in every simulation.

        Args:
            seeds: ``B`` SUMO seeds, or one int ``s`` meaning ``s, s+1, ..., s+B-1``.

        Returns:
            ``(obs float32 [B, I, OBS_DIM], state)``.
        """
        self._check_open()
        seeds_arr = np.asarray(seeds, dtype=np.int64)
        if seeds_arr.ndim == 0:
            seeds_arr = seeds_arr + np.arange(self.n_envs)
        if seeds_arr.shape != (self.n_envs,):
            raise ValueError(
                f"reset needs {self.n_envs} seeds (one per simulation), got shape {seeds_arr.shape}"
            )
        self._seeds = seeds_arr
        self._history = []
        self._state = None
        replies, restarted = self._call("reset", [int(s) for s in seeds_arr])
        lane_stats = np.stack([r[0] for r in replies])
        phase = np.broadcast_to(
            np.array([it.initial_phase for it in self.layout.intersections], dtype=np.int32),
            (self.n_envs, self.n_agents),
        ).copy()
        m = features.measure(self.index, lane_stats)
        self._state = SumoState(
            0, np.array([r[1] for r in replies]), phase, np.zeros(phase.shape, dtype=np.float32), m
        )
        return features.observation(self.index, m, phase), self._state

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every simulation by one 15-s decision.

        Args:
            actions: ``int [B, I]`` phase indices; each must be available (``avail_actions``).

        Returns:
            ``(obs [B, I, OBS_DIM], reward [B, I], done [B], info)`` (see the module docstring).
        """
        self._check_open()
        st = self._state
        if st is None:
            raise RuntimeError("call reset(seeds) before step()")
        if st.step >= self.decisions:
            raise RuntimeError(
                f"the episode ended after {self.decisions} decisions; call reset(seeds)"
            )
        act = self._check_actions(actions)
        replies, restarted = self._call("step", list(act))
        self._history.append(act)
        lane_stats = np.stack([r[0] for r in replies])
        m = features.measure(self.index, lane_stats)
        green = np.where(
            act == st.phase, st.green_time + DECISION_SECONDS, DECISION_SECONDS - YELLOW_SECONDS
        )
        self._state = SumoState(
            st.step + 1, np.array([r[1] for r in replies]), act, green.astype(np.float32), m
        )
        done = np.full(self.n_envs, self._state.step >= self.decisions)
        info: dict[str, Any] = {
            "components": features.reward_components(m),
            "time": self._state.time.copy(),
            "avail": self.avail_actions,
            "restarted": restarted,
            "worker_restarts": self.restarts.copy(),
        }
        if done[0]:
            if not all(r[2] for r in replies):
                raise SumoWorkerError("a worker did not finish its episode at the last decision")
            info["metrics"] = self._episode_metrics()
        return features.observation(self.index, m, act), features.reward(m), done, info

    def mask_context(self, state: SumoState | None = None) -> MaskContext:
        """The batched mask context (numpy ``[B, ...]``) of ``state`` (default: the latest)."""
        st = self._state if state is None else state
        if st is None:
            raise RuntimeError("call reset(seeds) before mask_context()")
        return features.mask_context(
            self.index, st.measurement, st.phase, st.green_time, st.step, self.decisions
        )

    def close(self) -> None:
        """Stop every worker and delete the temporary files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        workers = getattr(self, "_workers", [])
        for w in workers:
            try:
                if w.conn is not None and w.proc is not None and w.proc.poll() is None:
                    w.send("close", None)
            except WorkerDied:
                pass
        for w in workers:
            w.finish()
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)
        worker_handle.untrack(self)

    def __enter__(self) -> "SumoEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SumoEnv is closed; build a new one with envs_jax.make(...)")

    def _check_actions(self, actions: Any) -> np.ndarray:
        act = np.asarray(actions)
        if act.shape != (self.n_envs, self.n_agents):
            raise ValueError(
                f"actions must have shape (B, I) = {(self.n_envs, self.n_agents)}, got {act.shape}"
            )
        if not np.issubdtype(act.dtype, np.integer):
            if not np.all(np.equal(np.mod(act, 1), 0)):
                raise ValueError("actions must be integer phase indices 0-7")
        act = act.astype(np.int32)
        if act.min() < 0 or act.max() >= features.N_PHASES:
            raise ValueError("actions must be phase indices in 0-7")
        ok = np.take_along_axis(
            np.broadcast_to(self.index.phase_avail, (*act.shape, features.N_PHASES)),
            act[..., None],
            axis=-1,
        )[..., 0]
        if not ok.all():
            b, i = np.argwhere(~ok)[0]
            raise ValueError(
                f"action {act[b, i]} ({self.spec.action_names[act[b, i]]}) is unavailable at "
                f"intersection {self.layout.intersections[i].tls_id!r}; mask the policy with "
                f"env.avail_actions"
            )
        return act

    def _call(self, cmd: str, args: list[Any]) -> tuple[list[Any], np.ndarray]:
        """Send one request to every worker, then collect the answers; replace dead workers.

        A worker-side exception is raised once every answer is in. Any exception (Ctrl-C
        included) leaves the environment needing ``reset``; answers still in flight are dropped
        at the next call.
        """
        try:
            return self._call_all(cmd, args)
        except BaseException:
            self._state = None
            raise

    def _call_all(self, cmd: str, args: list[Any]) -> tuple[list[Any], np.ndarray]:
        dead: list[int] = []
        for b, w in enumerate(self._workers):
            try:
                w.drain(self.step_timeout)
                w.send(cmd, args[b])
            except WorkerDied:
                dead.append(b)
        out: list[Any] = [None] * self.n_envs
        errors: list[SumoWorkerError] = []
        for b, w in enumerate(self._workers):
            if b in dead:
                continue
            try:
                out[b] = w.recv(self.step_timeout)
            except WorkerDied:
                dead.append(b)
            except SumoWorkerError as err:
                errors.append(err)
        restarted = np.zeros(self.n_envs, dtype=bool)
        for b in dead:
            out[b] = self._recover(b, cmd, args[b])
            restarted[b] = True
        if errors:
            raise errors[0]
        return out, restarted

    def _recover(self, b: int, cmd: str, arg: Any) -> Any:
        """Replace worker ``b``, bring it back to the current decision, and answer ``cmd``."""
        w = self._workers[b]
        history = [h[b] for h in self._history] if cmd == "step" else []
        for attempt in range(1, self.max_restarts + 1):
            old_pid = w.pid
            self.restarts[b] += 1
            warnings.warn(
                f"SUMO worker {b} (pid {old_pid}) died; restarted it (restart "
                f"{int(self.restarts[b])}) and replayed {len(history)} decision(s)",
                RuntimeWarning,
                stacklevel=3,
            )
            w.kill()
            try:
                w.start()
                w.recv(self.step_timeout)
                if cmd == "reset":
                    w.send("reset", arg)
                    return w.recv(self.step_timeout)
                w.send("reset", int(self._seeds[b]))
                w.recv(self.step_timeout)
                for a in history:
                    w.send("step", a)
                    w.recv(self.step_timeout)
                w.send("step", arg)
                return w.recv(self.step_timeout)
            except WorkerDied:
                continue
        raise SumoWorkerError(f"SUMO worker {b} died {self.max_restarts} times in a row; giving up")

    def _episode_metrics(self) -> dict[str, np.ndarray]:
        per_env = [parse_tripinfo(self.tripinfo_file(b)).as_dict() for b in range(self.n_envs)]
        return {k: np.array([d[k] for d in per_env]) for k in METRIC_NAMES}
