"""What the training driver writes and returns: chunk records, selection scores, the result."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from espark_jax.ippo import sharding as shd
from espark_jax.ippo.core import LearnerState


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        state: the final learner state (K learners).
        evals: evaluation checkpoints, each ``{"update", "env_steps", "return": [K], ...}``.
        scores: selection score per learner = mean evaluation return over the last
            ``config.select_last`` checkpoints.
        seconds: wall time of the whole call (compilation included).
    """

    state: LearnerState
    evals: list[dict[str, Any]]
    scores: list[float]
    seconds: float


def selection_scores(evals: Sequence[dict[str, Any]], last: int) -> list[float]:
    """Mean ``return`` over the last ``last`` evaluation checkpoints, per learner."""
    if not evals:
        raise ValueError("no evaluation checkpoints: train for at least one update")
    returns = np.asarray([e["return"] for e in evals[-last:]], dtype=np.float64)
    return returns.mean(axis=0).tolist()


def per_learner_means(values: Any) -> list[float | None]:
    """``[U, K]`` -> per-learner mean over the chunk, ignoring NaN (``None`` when all are NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(arr.shape[0], -1)
    finite = ~np.isnan(arr)
    sums = np.where(finite, arr, 0.0).sum(axis=0)
    counts = finite.sum(axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts)]


def chunk_record(
    metrics: dict, update: int, trainer: Any, seconds: float, n_updates: int
) -> dict[str, Any]:
    """One JSON line for a chunk: counters, throughput and per-learner metric means."""
    per_update = trainer.agent_steps_per_update()
    record: dict[str, Any] = {
        "kind": "train",
        "update": update,
        "env_steps": update * trainer.num_steps * trainer.config.num_envs,
        "agent_steps": update * per_update,
        "seconds": seconds,
        "agent_steps_per_s": per_update * n_updates * trainer.num_learners / seconds
        if seconds > 0
        else None,
    }
    for name, value in shd.fetch(metrics).items():
        record[name] = per_learner_means(value)
    return record


def fmt_best(values: Sequence[float | None] | None) -> str:
    """The best of some per-learner values, for a progress bar (``-`` when there is none)."""
    vals = [v for v in (values or []) if v is not None]
    return f"{max(vals):.4g}" if vals else "-"
