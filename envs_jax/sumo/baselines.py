"""Classic traffic-signal controllers for the SUMO bridge, and an evaluation helper.

A controller maps the batched mask context (numpy, leading axis ``B``; see
:data:`envs_jax.sumo.features.MASK_CONTEXT_FIELDS`) to actions ``int [B, I]``; it only ever
chooses available phases.

* :class:`FixedTime`: each available phase for 30 s (two 15-s decisions, the first starting
  with the 5-s yellow), in the listed order ``WT-ET, NT-ST, ...``, skipping unavailable phases.
* :class:`MaxPressure`: at every decision the available phase with the largest pressure (halted
  vehicles on its incoming lanes minus those on the lanes they feed; ties: lowest index).

``evaluate(env, controller, seeds)`` runs one episode per seed and returns the tripinfo metrics
per episode with their mean and standard deviation.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from envs_jax.core import MaskContext
from envs_jax.sumo.metrics import METRIC_NAMES

Controller = Callable[[MaskContext], np.ndarray]


def fixed_time_actions(
    phase_avail: np.ndarray, step: np.ndarray | int, decisions_per_phase: int = 2
) -> np.ndarray:
    """Fixed-time cycle: ``int [..., I]`` phases for decision ``step`` (``[...]`` or scalar).

    Phase ``k`` of the cycle is the ``k``-th available phase; each is held ``decisions_per_phase``
    decisions.
    """
    avail = np.asarray(phase_avail, dtype=bool)
    step = np.asarray(step)[..., None]  # broadcast over intersections
    n_avail = avail.sum(-1)
    target = (step // decisions_per_phase) % np.maximum(n_avail, 1)
    rank = np.cumsum(avail, axis=-1) - 1
    return np.argmax(avail & (rank == target[..., None]), axis=-1).astype(np.int32)


def max_pressure_actions(phase_pressure: np.ndarray, phase_avail: np.ndarray) -> np.ndarray:
    """``int [..., I]``: the available phase with the highest pressure (lowest index on ties)."""
    score = np.where(np.asarray(phase_avail, dtype=bool), phase_pressure, -np.inf)
    return np.argmax(score, axis=-1).astype(np.int32)


class FixedTime:
    """Fixed-time control: ``seconds_per_phase`` per available phase, in the listed order."""

    name = "fixed-time"

    def __init__(self, seconds_per_phase: float = 30.0, decision_seconds: float = 15.0) -> None:
        ratio = seconds_per_phase / decision_seconds
        if ratio < 1 or ratio != int(ratio):
            raise ValueError(
                f"seconds_per_phase must be a multiple of {decision_seconds:g} s, "
                f"got {seconds_per_phase}"
            )
        self.decisions_per_phase = int(ratio)

    def __call__(self, ctx: MaskContext) -> np.ndarray:
        return fixed_time_actions(ctx.phase_avail, ctx.step, self.decisions_per_phase)


class MaxPressure:
    """MaxPressure control: the available phase with the largest pressure at every decision."""

    name = "max-pressure"

    def __call__(self, ctx: MaskContext) -> np.ndarray:
        return max_pressure_actions(ctx.phase_pressure, ctx.phase_avail)


def run_episode(
    env: Any, controller: Controller, seeds: Sequence[int] | int
) -> dict[str, np.ndarray]:
    """One episode in each of ``env``'s simulations; returns the metrics (``[B]`` each) plus
    ``return`` (the summed reward of all intersections, ``[B]``)."""
    env.reset(seeds)
    total = np.zeros(env.n_envs)
    while True:
        _, reward, done, info = env.step(controller(env.mask_context()))
        total += reward.sum(-1)
        if done.all():
            return {**info["metrics"], "return": total}


def evaluate(env: Any, controller: Controller, seeds: Sequence[int]) -> dict[str, Any]:
    """Run one episode per seed (``env.n_envs`` at a time) and summarise.

    Returns:
        ``{"seeds", "per_episode": {metric: list}, "mean": {metric: float},
        "std": {metric: float}}`` with the metrics of :mod:`envs_jax.sumo.metrics` and
        ``return``; the std is the population std over episodes.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    b = env.n_envs
    per: dict[str, list[float]] = {k: [] for k in (*METRIC_NAMES, "return")}
    for start in range(0, len(seeds), b):
        chunk = seeds[start : start + b]
        padded = chunk + [chunk[-1]] * (b - len(chunk))  # idle slots repeat the last seed
        out = run_episode(env, controller, padded)
        for k in per:
            per[k] += [float(v) for v in out[k][: len(chunk)]]
    return {
        "seeds": seeds,
        "per_episode": per,
        "mean": {k: float(np.mean(v)) for k, v in per.items()},
        "std": {k: float(np.std(v)) if len(v) > 1 else math.nan for k, v in per.items()},
    }
