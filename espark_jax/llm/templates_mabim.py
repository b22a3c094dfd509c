"""Hand-written parametric mask templates for MABIM (inventory management).

Every body reads only documented mask-context fields (``envs_jax/mabim/features.py``) and works
for any number of warehouses and SKUs: ``qty`` is the order quantity of every action,
``floor(action_space[a] * demand_mean)``, shape ``[W, N, A]``; "position" is stock plus in-transit.
Ordering nothing (quantity 0) stays allowed in every family except where the family's point is to
force a reorder band, so no agent is left without an action.
"""

from __future__ import annotations

from espark_jax.llm.templates import Family, Param

__all__ = ["FAMILIES"]

_PRELUDE = """
    dm = ctx.demand_mean[..., None]
    position = (ctx.in_stock + ctx.in_transit)[..., None]
    qty = np.floor(dm * action_space)"""

COVER_CAP = Family(
    "cover_cap",
    "forbid orders that would lift stock plus in-transit above max_days of mean demand",
    (Param("max_days", 1.0, 30.0, 8.0, log=True),),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    allowed = np.logical_or(position + qty <= $max_days * dm, qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

REORDER_BLOCK = Family(
    "reorder_block",
    "allow only ordering nothing once stock plus in-transit covers k_days of mean demand",
    (Param("k_days", 1.0, 20.0, 6.0, log=True),),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    covered = position >= $k_days * dm
    allowed = np.logical_or(np.logical_not(covered), qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

UPPER_BOUND = Family(
    "upper_bound",
    "forbid demand multipliers above max_mult",
    (Param("max_mult", 0.5, 12.0, 4.0, log=True),),
    """def $fn(ctx, action_space):
    ones = np.ones_like(ctx.demand_mean)[..., None]
    allowed = np.logical_or(action_space <= $max_mult, action_space <= 0)
    return np.where(allowed, 1, 0) * ones
""",
)

CAPACITY_GUARD = Family(
    "capacity_guard",
    "forbid orders larger than a demand-proportional share (frac) of the warehouse's free capacity",
    (Param("frac", 0.2, 2.0, 0.8, log=True),),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    free = np.maximum(ctx.capacity - ctx.total_stock - ctx.total_in_transit, 0.0)
    share = ctx.demand_mean / (np.sum(ctx.demand_mean, axis=-1, keepdims=True) + 1e-6)
    budget = ($frac * free[:, None] * share)[..., None]
    allowed = np.logical_or(qty <= budget, qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

SS_BAND = Family(
    "ss_band",
    "(S, s) shape: below s_days of cover allow only quantities near the order-up-to gap "
    "(S = s_days + extra_days, band +-width), otherwise only ordering nothing",
    (
        Param("s_days", 0.5, 10.0, 3.0, log=True),
        Param("extra_days", 0.5, 12.0, 4.0, log=True),
        Param("width", 0.1, 1.0, 0.5),
    ),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    target = np.maximum(($s_days + $extra_days) * dm - position, 0.0)
    in_band = np.logical_and(qty >= (1.0 - $width) * target, qty <= (1.0 + $width) * target)
    gap = np.abs(qty - target)
    nearest = gap <= np.min(gap, axis=-1, keepdims=True)
    below = position < $s_days * dm
    allowed = np.where(below, np.logical_or(in_band, nearest), qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

MARGIN_COVER = Family(
    "margin_cover",
    "cap cover at base_days of demand, shrunk for low-margin SKUs (margin below margin_ref)",
    (
        Param("base_days", 2.0, 30.0, 10.0, log=True),
        Param("margin_ref", 0.05, 0.5, 0.2, log=True),
        Param("min_frac", 0.1, 1.0, 0.3),
    ),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    margin = (ctx.selling_price - ctx.procurement_cost) / np.maximum(ctx.selling_price, 1e-6)
    scale = np.clip(margin / $margin_ref, $min_frac, 1.0)[..., None]
    allowed = np.logical_or(position + qty <= $base_days * scale * dm, qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

LEAD_TIME_COVER = Family(
    "lead_time_cover",
    "cap stock plus in-transit at the lead-time demand plus safety_days and z standard deviations",
    (Param("safety_days", 0.0, 10.0, 2.0), Param("z", 0.0, 3.0, 1.0)),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    vlt = ctx.vlt[..., None]
    need = (vlt + 1.0 + $safety_days) * dm + $z * ctx.demand_std[..., None] * np.sqrt(vlt + 1.0)
    allowed = np.logical_or(position + qty <= need, qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

HORIZON_GUARD = Family(
    "horizon_guard",
    "near the end of the episode allow only ordering nothing "
    "when goods would arrive too late to sell",
    (Param("extra_days", 0.0, 5.0, 1.0),),
    "def $fn(ctx, action_space):"
    + _PRELUDE
    + """
    late = ctx.days_left <= ctx.vlt[..., None] + $extra_days
    allowed = np.logical_or(np.logical_not(late), qty <= 0)
    return np.where(allowed, 1, 0)
""",
)

FAMILIES: tuple[Family, ...] = (
    COVER_CAP,
    REORDER_BLOCK,
    UPPER_BOUND,
    CAPACITY_GUARD,
    SS_BAND,
    MARGIN_COVER,
    LEAD_TIME_COVER,
    HORIZON_GUARD,
)
