"""Hand-written parametric mask templates for SUMO traffic-signal control (8 standard phases).

The SUMO environment documents its mask-context fields in its ``EnvSpec``; the bodies here read
them through *roles* (``$pressure``, ``$queue``, ``$avail``, ``$current``) that
:func:`resolve_roles` maps to ``ctx.<field>`` expressions by field name and shape:

* ``pressure``: a ``[*agents, 8]`` field whose name contains "pressure" (per-phase preferred);
* ``queue``: a ``[*agents, 8]`` field whose name contains "queue" or "halt";
* ``avail``: a ``[*agents, 8]`` field whose name contains "avail", "valid" or "allowed"
  (all phases allowed when there is none);
* ``current``: the current phase, an index field ``[*agents]`` or a one-hot ``[*agents, 8]``
  whose name contains "current" or "phase".

Families whose roles cannot be resolved are left out of the search.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from envs_jax.core import ContextField
from espark_jax.llm.templates import Family, Param

__all__ = ["FAMILIES", "resolve_roles"]

_TOP_K = """def $fn(ctx, action_space):
    avail = $avail
    score = np.where(avail, $SCORE, -1e9)
    better = np.sum(score[..., None, :] > score[..., :, None], axis=-1)
    allowed = np.logical_and(better < $k, avail)
    return np.where(allowed, 1, 0)
"""

TOP_K_PRESSURE = Family(
    "top_k_pressure",
    "keep only the k available phases with the highest pressure",
    (Param("k", 1, 7, 4, integer=True),),
    _TOP_K.replace("$SCORE", "$pressure"),
    roles=("pressure",),
)

TOP_K_QUEUE = Family(
    "top_k_queue",
    "keep only the k available phases with the longest queues",
    (Param("k", 1, 7, 3, integer=True),),
    _TOP_K.replace("$SCORE", "$queue"),
    roles=("queue",),
)

FORBID_EMPTY = Family(
    "forbid_empty",
    "forbid phases whose queue is at most min_queue unless no phase has a longer queue",
    (Param("min_queue", 0.0, 5.0, 0.5),),
    """def $fn(ctx, action_space):
    avail = $avail
    busy = np.logical_and(avail, $queue > $min_queue)
    any_busy = np.sum(busy, axis=-1, keepdims=True) > 0
    allowed = np.where(any_busy, busy, avail)
    return np.where(allowed, 1, 0)
""",
    roles=("queue",),
)

KEEP_CURRENT = Family(
    "keep_current",
    "keep the current phase (and nothing else) while its queue exceeds q_thresh",
    (Param("q_thresh", 1.0, 30.0, 8.0, log=True),),
    """def $fn(ctx, action_space):
    avail = $avail
    cur = np.logical_and($current, avail)
    cur_queue = np.sum(np.where(cur, $queue, 0.0), axis=-1, keepdims=True)
    has_cur = np.sum(cur, axis=-1, keepdims=True) > 0
    hold = np.logical_and(cur_queue > $q_thresh, has_cur)
    allowed = np.where(hold, cur, avail)
    return np.where(allowed, 1, 0)
""",
    roles=("current", "queue"),
)

PRESSURE_MARGIN = Family(
    "pressure_margin",
    "keep the available phases whose pressure is within frac of the best phase's pressure",
    (Param("frac", 0.05, 1.0, 0.3, log=True),),
    """def $fn(ctx, action_space):
    avail = $avail
    score = np.where(avail, $pressure, -1e9)
    best = np.max(score, axis=-1, keepdims=True)
    allowed = np.logical_and(score >= best - $frac * (np.abs(best) + 1.0), avail)
    return np.where(allowed, 1, 0)
""",
    roles=("pressure",),
)

FAMILIES: tuple[Family, ...] = (
    TOP_K_PRESSURE,
    TOP_K_QUEUE,
    FORBID_EMPTY,
    KEEP_CURRENT,
    PRESSURE_MARGIN,
)


def _pick(
    fields: Sequence[ContextField], words: Sequence[str], prefer: str = "phase"
) -> ContextField | None:
    hits = [f for f in fields if any(w in f.name.lower() for w in words)]
    hits.sort(key=lambda f: prefer not in f.name.lower())
    return hits[0] if hits else None


def resolve_roles(
    fields: Sequence[ContextField],
    shapes: Mapping[str, tuple[int, ...]],
    agent_shape: tuple[int, ...],
    n_actions: int,
) -> dict[str, str]:
    """``{role: expression}`` for the roles found among ``fields``.

    ``shapes`` gives the concrete shape of each field by name.
    """
    per_phase = [f for f in fields if shapes[f.name] == (*agent_shape, n_actions)]
    per_agent = [f for f in fields if shapes[f.name] == tuple(agent_shape)]
    roles: dict[str, str] = {}
    if (f := _pick(per_phase, ("pressure",))) is not None:
        roles["pressure"] = f"ctx.{f.name}"
    if (f := _pick(per_phase, ("queue",)) or _pick(per_phase, ("halt",))) is not None:
        roles["queue"] = f"ctx.{f.name}"
    if (f := _pick(per_phase, ("avail", "valid", "allowed"))) is not None:
        roles["avail"] = f"(ctx.{f.name} > 0)"
    else:
        roles["avail"] = "(np.zeros_like(action_space) == 0)"
    if (f := _pick(per_phase, ("current",))) is not None:
        roles["current"] = f"(ctx.{f.name} > 0.5)"
    elif (f := _pick(per_agent, ("current", "phase"), prefer="current")) is not None:
        roles["current"] = f"(np.arange(action_space.shape[0]) == ctx.{f.name}[..., None])"
    return roles
