"""Policy feedback for reflection: reward-component statistics of the best learner, as text.

Eureka and eSpark give the LLM the training curves of the best candidate. Here a curve is the
sequence of evaluation checkpoints of one iteration (no masks, the validation split by default):
for the episode return and for every reward component of every agent group (MABIM: warehouse),
the max, min and mean over the early third, the late third and the whole iteration, plus the
training return, the mask's statistics and one line per other candidate.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def _stage_stats(values: Sequence[float]) -> dict[str, dict[str, float]]:
    """max/min/mean over the early third, the late third and all values."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return {}
    third = max(1, int(math.ceil(arr.size / 3)))
    stages = {"early": arr[:third], "late": arr[-third:], "whole": arr}
    return {
        s: {"max": float(v.max()), "min": float(v.min()), "mean": float(v.mean())}
        for s, v in stages.items()
    }


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.4g}"


def _line(name: str, stats: Mapping[str, Mapping[str, float]]) -> str:
    if not stats:
        return f"  {name}: no data"
    parts = [f"{s} mean {_fmt(stats[s]['mean'])}" for s in ("early", "late")]
    w = stats["whole"]
    return (
        f"  {name}: {', '.join(parts)}; whole max {_fmt(w['max'])}, min {_fmt(w['min'])}, "
        f"mean {_fmt(w['mean'])}"
    )


def curve_statistics(evals: Sequence[Mapping[str, Any]], slot: int) -> dict[str, Any]:
    """Statistics of one learner's evaluation checkpoints: return and components per group."""
    out: dict[str, Any] = {
        "return": _stage_stats([e["return"][slot] for e in evals]),
        "components": {},
    }
    if evals and "components" in evals[0]:
        for name, groups in evals[0]["components"].items():
            out["components"][name] = {
                g: _stage_stats([e["components"][name][g][slot] for e in evals]) for g in groups
            }
    return out


def mask_statistics_text(stats: Mapping[str, Any] | None, action_names: Sequence[str]) -> str:
    """One paragraph about what the mask allowed on the checked states (compiler statistics)."""
    if not stats:
        return "Mask statistics: none (this slot trained with the all-ones fallback mask)."
    parts = []
    if "mean_allowed" in stats:
        parts.append(
            f"on average {stats['mean_allowed']:.1f} of {len(action_names)} actions allowed"
        )
    if "none_allowed_frac" in stats:
        parts.append(
            f"{100 * stats['none_allowed_frac']:.1f}% of agent-states allowed nothing "
            "(falls back to unmasked)"
        )
    if "all_allowed_frac" in stats:
        parts.append(f"{100 * stats['all_allowed_frac']:.1f}% allowed every action (no pruning)")
    rate = stats.get("allowed_rate")
    if rate is not None and len(rate) == len(action_names):
        parts.append(
            "allowed rate per action: "
            + ", ".join(f"{n} {100 * r:.0f}%" for n, r in zip(action_names, rate))
        )
    return "Mask statistics on the checked states: " + "; ".join(parts) + "."


def build_feedback(
    *,
    iteration: int,
    best_slot: int,
    evals: Sequence[Mapping[str, Any]],
    train_returns: Sequence[float | None],
    mask_stats: Mapping[str, Any] | None,
    action_names: Sequence[str],
    others: Sequence[str],
    reward_factors: bool = True,
    env_steps: int | None = None,
    split: str = "validation",
) -> str:
    """The policy-feedback text for the best candidate of an iteration.

    Args:
        iteration: iteration number (1-based).
        best_slot: the selected slot.
        evals: the iteration's evaluation checkpoints (``Trainer.evaluate`` records).
        train_returns: the best slot's mean training return per chunk (with masks, scaled back).
        mask_stats: the compiler's statistics of the best slot's mask (None for a fallback).
        action_names: names of the actions, in order.
        others: one line per other slot (score, or why it fell back).
        reward_factors: False gives the total reward only (the ``--no-reward-factors`` ablation).
        env_steps: environment steps each candidate trained this iteration.
        split: the evaluation split.
    """
    curves = curve_statistics(evals, best_slot)
    head = (
        f"Iteration {iteration}: the best exploration function was slot {best_slot}. "
        f"Its learner was evaluated without masks on the {split} split at {len(evals)} checkpoints"
    )
    head += f" during {env_steps:,} environment steps of training." if env_steps else "."
    lines = [head, "Episode return (higher is better):", _line("total return", curves["return"])]
    if reward_factors:
        lines.append("Reward components per episode (profit is added, every *_cost is subtracted):")
        for name, groups in curves["components"].items():
            for group, stats in groups.items():
                label = name if len(groups) == 1 else f"{name} [{group}]"
                lines.append(_line(label, stats))
    tr = _stage_stats(list(train_returns))
    if tr:
        lines.append("Training return under the mask (per episode):")
        lines.append(_line("train return", tr))
    lines.append(mask_statistics_text(mask_stats, action_names))
    if others:
        lines.append(
            "Other candidates of this iteration "
            "(selection score = mean evaluation return of the last checkpoints):"
        )
        lines.extend(f"  {o}" for o in others)
    return "\n".join(lines)
