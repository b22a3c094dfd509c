"""Policy feedback in the form of the authors' released code (``--feedback released``).

The released loop (``run/gpt_as_mask_run_parallel_whole_iter.py``) tells the LLM, for the total
reward and every reward component, one array per statistic with a value per warehouse: the
validation checkpoint with the largest and the smallest total, the mean of the first and of the
last ``min(5, n)`` checkpoints, and the mean of all. It then lists, per warehouse, which actions
the mask allowed how often, in the bands [0, 0.3], [0.3, 0.7] and [0.7, 1] (closed at both ends,
so a value on a border is listed twice, as there), and which actions were chosen how often
relative to uniform.

What this module computes the same way: the reward statistics (from our evaluation checkpoints)
and the bands. What differs, and why: the released availability is measured on the states of the
training rollouts; here it is the exported mask applied to the contexts recorded for the mask
checks (a reference policy's states), because the trainer keeps no per-action statistics of its
rollouts. The action-chosen percentages need those statistics too and are left out.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: Bands of the action-available frequency (closed at both ends, as in the released code).
AVAILABILITY_BANDS = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))

#: Checkpoints averaged for the early and late stage (``min(this, n)``).
STAGE_LEN = 5


def metric_arrays(evals: Sequence[Mapping[str, Any]], slot: int) -> dict[str, np.ndarray]:
    """``{metric: [checkpoints, groups]}`` of one learner: ``reward`` (the episode reward per
    group) and every reward component."""
    if not evals:
        return {}
    groups = list(evals[0]["group_return"])
    out = {"reward": np.array([[e["group_return"][g][slot] for g in groups] for e in evals])}
    for name, per_group in evals[0].get("components", {}).items():
        out[name] = np.array([[e["components"][name][g][slot] for g in per_group] for e in evals])
    return out


def stage_statistics(values: np.ndarray) -> dict[str, np.ndarray]:
    """The released statistics of ``values [checkpoints, groups]``: ``max`` / ``min`` (the
    checkpoint with the largest / smallest total), ``early`` / ``late`` (mean of the first /
    last ``min(5, n)`` checkpoints) and ``mean`` (all checkpoints), each ``[groups]``."""
    v = np.asarray(values, dtype=np.float64)
    n = min(STAGE_LEN, v.shape[0])
    totals = v.sum(axis=1)
    return {
        "max": v[int(np.argmax(totals))],
        "min": v[int(np.argmin(totals))],
        "early": v[:n].mean(axis=0),
        "late": v[-n:].mean(axis=0),
        "mean": v.mean(axis=0),
    }


def availability_bands(rate: np.ndarray) -> list[list[list[int]]]:
    """Actions per group and band: ``out[g][b]`` lists the actions whose allowed rate
    ``rate [groups, A]`` lies in ``AVAILABILITY_BANDS[b]`` (both ends included)."""
    rate = np.asarray(rate, dtype=np.float64)
    return [
        [[int(a) for a in np.flatnonzero((r >= lo) & (r <= hi))] for lo, hi in AVAILABILITY_BANDS]
        for r in rate
    ]


def allowed_rate_by_group(
    masks: np.ndarray, agent_group: Sequence[int], n_groups: int
) -> np.ndarray:
    """``[groups, A]``: the share of (state, agent) rows of each group in which each action is
    allowed, from raw masks ``[n, *agent_shape, A]`` (agents in ``spec.agent_group`` order)."""
    m = np.asarray(masks) != 0
    rows = m.reshape(m.shape[0], -1, m.shape[-1])  # [n, agents, A]
    group = np.asarray(agent_group)
    return np.stack([rows[:, group == g].mean(axis=(0, 1)) for g in range(n_groups)])


def mask_allowed_rate(fn: Any, samples: Mapping[str, Any], spec: Any) -> np.ndarray:
    """``[groups, A]`` allowed rate of mask ``fn`` (raw output, before any fallback) on the
    recorded contexts ``samples`` (field -> ``[n, ...]``) of an environment with ``spec``."""
    import jax
    import jax.numpy as jnp

    from envs_jax.core import MaskContext

    ctx = MaskContext({k: jnp.asarray(v) for k, v in samples.items()})
    action_space = jnp.asarray(spec.action_values, jnp.float32)
    raw = getattr(fn, "raw", fn)
    if not getattr(fn, "batched", False):
        raw = jax.vmap(raw, in_axes=(0, None))
    masks = np.asarray(raw(ctx, action_space))
    return allowed_rate_by_group(masks, spec.agent_group, spec.n_groups)


def _arr(x: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:,.1f}" for v in np.asarray(x, dtype=np.float64)) + "]"


def build_released_feedback(
    *,
    evals: Sequence[Mapping[str, Any]],
    best_slot: int,
    eval_every_episodes: int,
    allowed_rate: np.ndarray | None,
    action_values: Sequence[float],
    reward_factors: bool = True,
) -> str:
    """The feedback text of the best candidate in the released code's form.

    Args:
        evals: the iteration's evaluation checkpoints (validation split, no masks).
        best_slot: the selected slot.
        eval_every_episodes: training episodes between two checkpoints.
        allowed_rate: ``[groups, A]`` share of rows allowing each action
            (:func:`allowed_rate_by_group`), or None for a slot without a mask.
        action_values: the action space (the order quantity multipliers).
        reward_factors: False keeps the total reward only (``--no-reward-factors``).
    """
    metrics = metric_arrays(evals, best_slot)
    if not reward_factors:
        metrics = {"reward": metrics["reward"]} if "reward" in metrics else {}
    n = len(evals)
    k = min(STAGE_LEN, n)
    lines = [
        f"The policy trained with the exploration function above was evaluated without masks "
        f"every {eval_every_episodes:,} training episodes ({n} evaluations). Each value below is "
        "an array with one entry per warehouse, from the most upstream (warehouse 0) to the "
        "most downstream: the evaluation with the highest and with the lowest total, the mean of "
        f"the first {k} and of the last {k} evaluations, and the mean of all of them."
    ]
    for name, values in metrics.items():
        s = stage_statistics(values)
        lines.append(
            f"{name}: highest {_arr(s['max'])}, lowest {_arr(s['min'])}, early mean "
            f"{_arr(s['early'])}, late mean {_arr(s['late'])}, overall mean {_arr(s['mean'])}"
        )
    if allowed_rate is None:
        lines.append("This slot trained without a mask (every action was always available).")
        return "\n".join(lines)
    lines.append(
        "Action available frequency: the share of SKUs and states in which an action was not "
        "masked (0: never available, 1: always), per warehouse, grouped into bands; actions are "
        "named by their order multiplier."
    )
    for g, bands in enumerate(availability_bands(allowed_rate)):
        parts = []
        for (lo, hi), acts in zip(AVAILABILITY_BANDS, bands):
            names = " ".join(f"{action_values[a]:g}" for a in acts) or "no action"
            parts.append(f"[{lo:g}, {hi:g}]: {names}")
        lines.append(f"warehouse {g}: " + "; ".join(parts))
    return "\n".join(lines)
