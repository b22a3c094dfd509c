"""The training driver: chunks of updates, metrics lines, evaluation checkpoints, selection.

:func:`train` runs any :class:`~espark_jax.ippo.trainer.Trainer` for a number of updates in
chunks (one device program per chunk, one host sync per chunk), appends one JSON line of
per-learner metrics per chunk, evaluates every ``config.eval_every`` updates and returns the
selection score of every learner. :func:`evaluate_learner` is the one "greedy and sampled on
these splits" evaluation of a single learner, used by ``espark train/eval`` and the loop.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo.trainer import LearnerState, Trainer


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


def _per_learner_means(values: Any) -> list[float | None]:
    """``[U, K]`` -> per-learner mean over the chunk, ignoring NaN (``None`` when all are NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(arr.shape[0], -1)
    finite = ~np.isnan(arr)
    sums = np.where(finite, arr, 0.0).sum(axis=0)
    counts = finite.sum(axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts)]


def _chunk_record(
    metrics: dict, update: int, trainer: Trainer, seconds: float, n_updates: int
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
    for name, value in jax.device_get(metrics).items():
        record[name] = _per_learner_means(value)
    return record


def train(
    trainer: Trainer,
    state: LearnerState,
    key: jax.Array,
    num_updates: int | None = None,
    metrics_path: str | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train K learners for ``num_updates`` updates with periodic evaluation checkpoints.

    Chunks of ``config.updates_per_chunk`` updates run on device; after each chunk one JSON line
    of training metrics (per learner means over the chunk) is appended to ``metrics_path``, and
    every ``config.eval_every`` updates (and at the end) the learners are evaluated without masks
    on ``config.eval_split`` (one ``"kind": "eval"`` line). A tqdm bar shows progress.
    """
    from tqdm.auto import tqdm

    cfg = trainer.config
    num_updates = num_updates or cfg.num_updates
    start = time.perf_counter()
    evals: list[dict[str, Any]] = []
    sink = open(metrics_path, "a") if metrics_path else None
    done, next_eval = 0, cfg.eval_every
    try:
        with tqdm(
            total=num_updates, desc=desc, unit="upd", disable=not progress, dynamic_ncols=True
        ) as bar:
            while done < num_updates:
                n = min(cfg.updates_per_chunk, num_updates - done)
                t0 = time.perf_counter()
                state, metrics = trainer.train_chunk(state, n)
                jax.block_until_ready(state.n_updates)
                done += n
                record = _chunk_record(metrics, done, trainer, time.perf_counter() - t0, n)
                records = [record]
                if done >= next_eval or done == num_updates:
                    key, k_eval = jax.random.split(key)
                    ev = trainer.evaluate(state.params, k_eval)
                    ev = {"kind": "eval", "update": done, "env_steps": record["env_steps"], **ev}
                    evals.append(ev)
                    records.append(ev)
                    while next_eval <= done:
                        next_eval += cfg.eval_every
                if sink is not None:
                    for r in records:
                        sink.write(json.dumps(r) + "\n")
                    sink.flush()
                postfix = {"train": _fmt_best(record.get("train_return"))}
                if evals:
                    postfix["eval"] = _fmt_best(evals[-1]["return"])
                bar.set_postfix(postfix)
                bar.update(n)
    finally:
        if sink is not None:
            sink.close()
    return TrainResult(
        state=state,
        evals=evals,
        scores=selection_scores(evals, cfg.select_last),
        seconds=time.perf_counter() - start,
    )


def _fmt_best(values: Sequence[float | None] | None) -> str:
    vals = [v for v in (values or []) if v is not None]
    return f"{max(vals):.4g}" if vals else "-"


def evaluate_learner(
    trainer: Trainer, params: Any, key: jax.Array, splits: Sequence[str], num_envs: int
) -> dict[str, dict[str, Any]]:
    """One learner's ``params`` evaluated greedy and sampled (no masks) on each split:
    ``{split: {"greedy": ev, "sampled": ev}}`` with plain numbers instead of ``[1]`` lists."""
    stacked = jax.tree_util.tree_map(lambda x: jnp.expand_dims(x, 0), params)
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        for greedy in (True, False):
            ev = trainer.evaluate(stacked, key, split=split, greedy=greedy, num_envs=num_envs)
            out.setdefault(split, {})["greedy" if greedy else "sampled"] = _first_learner(ev)
    return out


def _first_learner(tree: Any) -> Any:
    """Learner 0's values of an evaluation (lists of numbers become numbers)."""
    if isinstance(tree, dict):
        return {k: _first_learner(v) for k, v in tree.items()}
    if isinstance(tree, list) and tree and not isinstance(tree[0], str):
        return tree[0]
    return tree
