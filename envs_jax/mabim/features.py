"""MABIM observations (per-agent features for a shared policy) and the mask context.

The mask context is what an LLM-written mask function may read. Every field is documented here
because the documentation goes verbatim into the prompts. Shapes: ``W`` warehouses (head first,
the tail sells to consumers), ``N`` SKUs, ``L`` = 21 lookback days, ``A`` actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from envs_jax.core import ContextField, MaskContext
from envs_jax.mabim.params import MabimParams, MabimState
from envs_jax.mabim.window import WindowSums, demand_mean, mean_std, sums_over, window_sums

if TYPE_CHECKING:  # pragma: no cover
    from envs_jax.mabim.env import MabimEnv

Z_95 = 1.6448536  # norm.ppf(0.95), the original's reorder-point quantile
FEATURE_CLIP = 30.0

MASK_CONTEXT_FIELDS: tuple[ContextField, ...] = (
    ContextField(
        "in_stock",
        ("W", "N"),
        "float32",
        "units on hand in each warehouse at the end of the last simulated day "
        "(after today's receipts)",
    ),
    ContextField(
        "in_transit",
        ("W", "N"),
        "float32",
        "units ordered by (head) or shipped to (other warehouses) this warehouse that have not "
        "arrived yet",
    ),
    ContextField(
        "demand_mean",
        ("W", "N"),
        "float32",
        "mean daily demand over the last 21 days (for a non-tail warehouse its demand is the "
        "downstream warehouse's orders); action a orders floor(action_space[a] * demand_mean) "
        "units",
    ),
    ContextField(
        "demand_std",
        ("W", "N"),
        "float32",
        "standard deviation of daily demand over the last 21 days",
    ),
    ContextField(
        "demand_history",
        ("W", "N", "L"),
        "float32",
        "daily demand of the last 21 days, oldest first (index -1 is the most recent day)",
    ),
    ContextField(
        "sale_mean",
        ("W", "N"),
        "float32",
        "mean daily units sold over the last 21 days (sales are capped by stock; unmet demand is "
        "lost)",
    ),
    ContextField(
        "replenish_history",
        ("W", "N", "L"),
        "float32",
        "units this warehouse ordered on each of the last 21 days, oldest first",
    ),
    ContextField(
        "selling_price",
        ("W", "N"),
        "float32",
        "selling price per unit at this warehouse on the last simulated day (prices change rarely)",
    ),
    ContextField(
        "procurement_cost",
        ("W", "N"),
        "float32",
        "purchase price per unit on the last simulated day (the upstream warehouse's selling "
        "price)",
    ),
    ContextField("holding_cost", ("W", "N"), "float32", "holding cost per unit in stock per day"),
    ContextField(
        "unit_order_cost",
        ("W", "N"),
        "float32",
        "fixed cost charged for every day on which a positive quantity is ordered",
    ),
    ContextField(
        "vlt",
        ("W", "N"),
        "float32",
        "lead time in days: goods ordered today arrive after vlt days and can be sold the day "
        "after",
    ),
    ContextField(
        "capacity",
        ("W",),
        "float32",
        "storage capacity of each warehouse in units (all SKUs together); arrivals beyond the free "
        "space are destroyed at a cost of 0.5 x procurement_cost per unit",
    ),
    ContextField(
        "total_stock", ("W",), "float32", "sum of in_stock over all SKUs of each warehouse"
    ),
    ContextField(
        "total_in_transit", ("W",), "float32", "sum of in_transit over all SKUs of each warehouse"
    ),
    ContextField(
        "echelon",
        ("W", "N"),
        "int32",
        "warehouse index of each agent: 0 = head (buys from the "
        "super vendor), W-1 = tail (sells to consumers)",
    ),
    ContextField("day", (), "int32", "decisions already taken in this episode"),
    ContextField(
        "days_left", (), "int32", "decisions left in this episode, including the current one"
    ),
)


N_LOCAL_SCALARS = 16
N_GLOBAL_SCALARS = 7


def obs_dim(n_warehouses: int, lookback: int) -> int:
    """Features per agent: 16 local scalars + 2 local windows, 7 global scalars + 1 global window,
    the warehouse one-hot and one time feature (for L = 21: 87 + W)."""
    return N_LOCAL_SCALARS + 2 * lookback + N_GLOBAL_SCALARS + lookback + n_warehouses + 1


def observation(
    env: "MabimEnv", state: MabimState, params: MabimParams, sums: WindowSums | None = None
) -> jax.Array:
    """Per-agent features of the day just simulated, ``[W * N, obs_dim]``, warehouse-major.

    The feature set follows the original MARL wrapper (``ObservationWrapper4OldCode``), computed on
    the day just simulated (so nothing leaks at reset), with three changes for a shared network:
    the lead time is divided by 10, the "remaining capacity" feature is the free fraction
    ``(cap - sum I) / cap`` (the original's ``N - sum I / cap`` grows with N), and a time feature
    ``min(days_left, 30) / 30`` is appended. Every feature is clipped to +-30. ``sums`` (the
    state's :class:`WindowSums`) may be passed when known; by default they are computed.

    Order of the features:

    1. 16 local scalars (``z = dm + 1`` with ``dm`` the mean of the 21-day demand window, ``I``
       stock, ``T`` in transit, ``p`` price, ``c`` cost): [I<=0], I/z, T/z, (I+T)/z, rop/z,
       [I+T<=rop], std(demand)/z, dm/cap, c/p, (p-c)/p, holding/p, order_cost/p, vlt/10,
       dm(vlt+1)/z, (I+T-dm(vlt+1))/z, a constant 1;
    2. 7 warehouse-level scalars (broadcast over the warehouse's SKUs): sum I/cap, stock margin
       ratio, free capacity fraction, sum T/cap, in-transit margin ratio (all warehouses),
       sum (I+T)/cap, (I+T) margin ratio;
    3. windows, oldest day first: demand / z (21), orders / z (21), orders / cap (21);
    4. the warehouse one-hot (W) and the time feature (1).

    The demand window needs no explicit clip: a day's demand is at most the window's sum, so
    demand / z < 21.

    Implementation (speed, measured in ``benchmarks/env_throughput.py``): the scalar features are
    computed feature-major, ``[F, W, N]`` with the SKU axis contiguous, so their arithmetic
    vectorises; XLA writes that block once and transposes it while it writes the per-agent rows
    with the scaled windows. The window statistics come from :class:`WindowSums`, which
    ``env.step`` slides by one day instead of summing the histories again.
    """
    W, N, L = env.W, env.N, env.L
    sums = window_sums(state) if sums is None else sums
    scal, inv_z, inv_cap = _scalar_block(env, state, params, sums)  # [F, W, N], [W, N], [W, 1]
    rows = jnp.moveaxis(scal, 0, -1)  # [W, N, F]
    rep = state.replenish_hist
    obs = jnp.concatenate(
        [
            rows[..., :N_SCALARS],
            state.demand_hist
            * inv_z[..., None],  # <= 21: a day's demand is at most the window's sum
            _clip_above(rep * inv_z[..., None]),
            _clip_above(rep * inv_cap[..., None]),
            rows[..., N_SCALARS:],
        ],
        axis=-1,
    )
    return obs.reshape(W * N, obs_dim(W, L))


def _stack_clipped(features: list[jax.Array]) -> jax.Array:
    """``clip(stack(features), -30, 30)`` built from stacks of at most 8 features.

    XLA:CPU fuses a concatenation only when it has at most 8 operands; a longer stack becomes one
    kernel per feature plus a copy. The clip between the groups keeps XLA from flattening them.
    """
    groups = [_clip(jnp.stack(features[i : i + 8])) for i in range(0, len(features), 8)]
    return jnp.concatenate(groups)


def _clip(x: jax.Array) -> jax.Array:
    """``clip(x, -30, 30)`` as selects (``clip`` lowers to NaN- and signed-zero-aware min/max)."""
    return jnp.where(x > FEATURE_CLIP, FEATURE_CLIP, jnp.where(x < -FEATURE_CLIP, -FEATURE_CLIP, x))


def _clip_above(x: jax.Array) -> jax.Array:
    """``min(x, FEATURE_CLIP)`` as a select (cheaper than ``minimum``'s NaN handling on CPU)."""
    return jnp.where(x > FEATURE_CLIP, FEATURE_CLIP, x)


N_SCALARS = N_LOCAL_SCALARS + N_GLOBAL_SCALARS


def _scalar_block(
    env: "MabimEnv", state: MabimState, params: MabimParams, sums: WindowSums
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The 23 clipped scalar features, the one-hot and the time feature as ``[F, W, N]``.

    ``F = 24 + W``; also ``1/z`` ``[W, N]`` and ``1/cap`` ``[W, 1]`` for the windows.
    """
    W, dt = env.W, env.dtype
    I, T = state.in_stock, state.in_transit
    dm, std_d = mean_std(sums.demand, sums.demand_sq, env.L)
    sale_mean, sale_std = mean_std(sums.sale, sums.sale_sq, env.L)
    vlt = params.vlt
    rop = vlt * sale_mean + jnp.sqrt(vlt) * sale_std * Z_95
    inv_cap = 1.0 / params.capacity[:, None]  # [W, 1]
    inv_z = 1.0 / (dm + 1.0)
    price, cost = state.price, state.cost
    inv_p = 1.0 / jnp.where(price > 0, price, 1.0)
    IT = I + T
    cover = dm * (vlt + 1.0)
    margin = price - cost
    # warehouse totals [W, 1]: stock, in transit, and their values at margin
    sum_I, sum_T, val_I, val_T = (x[:, None] for x in sums_over(1, I, T, I * margin, T * margin))
    sum_IT = sum_I + sum_T
    ones = jnp.ones_like(I)
    scalars = [
        (I <= 0).astype(dt),
        I * inv_z,
        T * inv_z,
        IT * inv_z,
        rop * inv_z,
        (IT <= rop).astype(dt),
        std_d * inv_z,
        dm * inv_cap,
        cost * inv_p,
        margin * inv_p,
        params.holding_cost * inv_p,
        params.unit_order_cost * inv_p,
        vlt * 0.1,
        cover * inv_z,
        (IT - cover) * inv_z,
        ones,
        ones * (sum_I * inv_cap),
        val_I / (sum_I + 1.0) * inv_p,
        ones * ((params.capacity[:, None] - sum_I) * inv_cap),
        ones * (sum_T * inv_cap),
        jnp.sum(val_T) / (sum_T + 1.0) * inv_p,
        ones * (sum_IT * inv_cap),
        (val_I + val_T) / (sum_IT + 1.0) * inv_p,
    ]
    days_left = (params.horizon - state.t).astype(dt)
    tail = [ones * (jnp.arange(W)[:, None] == w).astype(dt) for w in range(W)]
    tail.append(ones * (jnp.minimum(days_left, 30.0) / 30.0))
    block = jnp.concatenate([_stack_clipped(scalars), jnp.stack(tail)])
    return block, inv_z, inv_cap


def mask_context(env: "MabimEnv", state: MabimState, params: MabimParams) -> MaskContext:
    """The documented fields of :data:`MASK_CONTEXT_FIELDS` for the next decision (day ``t``)."""
    W, N = env.W, env.N
    sums = window_sums(state)  # the same reduction as in env.step: XLA computes it once per state
    _, demand_std = mean_std(sums.demand, sums.demand_sq, env.L)
    return MaskContext(
        {
            "in_stock": state.in_stock,
            "in_transit": state.in_transit,
            "demand_mean": demand_mean(sums, params),  # the expression of env.step's orders
            "demand_std": demand_std,
            "demand_history": state.demand_hist,
            "sale_mean": sums.sale * (1.0 / env.L),
            "replenish_history": state.replenish_hist,
            "selling_price": state.price,
            "procurement_cost": state.cost,
            "holding_cost": params.holding_cost,
            "unit_order_cost": params.unit_order_cost,
            "vlt": params.vlt,
            "capacity": params.capacity,
            "total_stock": jnp.sum(state.in_stock, axis=1),
            "total_in_transit": jnp.sum(state.in_transit, axis=1),
            "echelon": jnp.broadcast_to(jnp.arange(W, dtype=jnp.int32)[:, None], (W, N)),
            "day": state.t.astype(jnp.int32),
            "days_left": (params.horizon - state.t).astype(jnp.int32),
        }
    )
