"""MABIM parameters and state: the device arrays of one split, the carry of one environment.

:func:`build_params` turns a :class:`~envs_jax.mabim.config.MabimConfig` and its
:class:`~envs_jax.mabim.data.MabimTables` into :class:`MabimParams` for one split;
:func:`split_rows` finds the split's data rows and checks that the data cover it (warm-up
included). Notation as in :mod:`envs_jax.mabim.env`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs_jax.mabim.config import MabimConfig
from envs_jax.mabim.data import MabimTables

SPLITS = ("train", "validation", "test")


@struct.dataclass
class MabimParams:
    """Device arrays of one scenario and split. Data rows cover every date of the data source.

    Shapes: ``price``/``cost`` ``[W, T, N]``, ``demand`` ``[T, N]`` (tail), per-SKU statics
    ``[W, N]``. ``start_lo`` is the data row of day 0 of the first allowed window, ``n_starts``
    the number of allowed windows (1 for validation/test), ``horizon`` the decisions per episode
    ``D``.
    """

    price: jax.Array
    cost: jax.Array
    demand: jax.Array
    init_stock: jax.Array
    vlt: jax.Array
    vlt_onehot: jax.Array  # [W, V, N]: 1 where pipeline slot == vlt
    capacity: jax.Array  # [W]
    volume: jax.Array  # [W, N]
    holding_cost: jax.Array  # [W, N] per unit per day
    unit_order_cost: jax.Array  # [W, N]
    backlog_ratio: jax.Array  # [W, 1]
    overflow_cost_ratio: jax.Array  # [W, 1]
    action_values: jax.Array  # [A]
    lookback: jax.Array  # [W, N] filled with L: a runtime divisor, see window.demand_mean
    start_lo: jax.Array  # int32 scalar
    n_starts: jax.Array  # int32 scalar
    horizon: jax.Array  # int32 scalar


@struct.dataclass
class MabimState:
    """Carry of one environment. Histories are ``[W, N, L]``, oldest day first."""

    t: jax.Array  # int32: day within the episode (negative during the warm-up)
    start: jax.Array  # int32: data row of day 0
    in_stock: jax.Array  # [W, N]
    in_transit: jax.Array  # [W, N]
    pipeline: jax.Array  # [W, V, N]: pipeline[:, j] arrives on day t + j
    demand_hist: jax.Array  # [W, N, L]
    sale_hist: jax.Array  # [W, N, L]
    replenish_hist: jax.Array  # [W, N, L]
    excess: jax.Array  # [W, N] destroyed on the last simulated day
    price: jax.Array  # [W, N] selling price on the last simulated day
    cost: jax.Array  # [W, N] procurement cost on the last simulated day


def lead_times(config: MabimConfig, tables: MabimTables) -> np.ndarray:
    """Lead times ``[W, N]`` of the config's warehouses (head first)."""
    return np.stack([tables.vlt[s] for s in config.warehouses])


def split_rows(config: MabimConfig, tables: MabimTables, split: str) -> tuple[int, int, int]:
    """``(first start row, number of starts, horizon)`` of a split; checks the data cover it."""
    first, last = config.split_dates(split)
    lo, hi = tables.date_index(first), tables.date_index(last)
    span = hi - lo + 1
    if split == "train" and config.random_window:
        horizon = config.horizon
        if span < horizon:
            raise ValueError(
                f"{config.name}: the train split has {span} days, fewer than the horizon {horizon}"
            )
        n_starts = span - horizon + 1
    else:
        horizon, n_starts = span, 1
    if lo - config.lookback < 0:
        raise ValueError(
            f"{config.name}: the {split} split starts on row {lo} of the data but the "
            f"{config.lookback}-day warm-up needs earlier days; the data start on "
            f"{tables.dates[0]}"
        )
    return lo, n_starts, horizon


def build_params(
    config: MabimConfig, tables: MabimTables, rows: tuple[int, int, int], dtype: jnp.dtype
) -> MabimParams:
    """The device arrays of one split whose :func:`split_rows` are ``rows``, in ``dtype``."""
    cfg, tabs = config, tables
    lo, n_starts, horizon = rows
    W, N = len(cfg.warehouses), len(tabs.sku_ids)
    price = np.stack([tabs.prices[t] for t in cfg.price_tables])  # [W, T, N]
    cost = np.stack([tabs.prices[t] for t in cfg.cost_tables])
    vlt = lead_times(cfg, tabs)
    init_stock = np.stack([tabs.init_stock[s] for s in cfg.warehouses])
    slots = int(vlt.max()) + 1
    onehot = (np.arange(slots)[None, :, None] == vlt[:, None, :]).astype(np.float64)

    def per_warehouse(values: tuple[float, ...]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(W, 1)

    volume = np.broadcast_to(per_warehouse(cfg.volume), (W, N))
    storage = per_warehouse(cfg.unit_storage_cost)
    holding = per_warehouse(cfg.basic_holding_cost) + storage * volume

    def as_f(x: object) -> jax.Array:
        return jnp.asarray(np.asarray(x, dtype=np.float64), dtype=dtype)

    return MabimParams(
        price=as_f(price),
        cost=as_f(cost),
        demand=as_f(tabs.demand),
        init_stock=as_f(init_stock),
        vlt=as_f(vlt),
        vlt_onehot=as_f(onehot),
        capacity=as_f(cfg.capacity),
        volume=as_f(volume),
        holding_cost=as_f(holding),
        unit_order_cost=as_f(np.broadcast_to(per_warehouse(cfg.unit_order_cost), (W, N))),
        backlog_ratio=as_f(per_warehouse(cfg.backlog_ratio)),
        overflow_cost_ratio=as_f(per_warehouse(cfg.overflow_cost_ratio)),
        action_values=as_f(cfg.action_values),
        lookback=as_f(np.full((W, N), cfg.lookback)),
        start_lo=jnp.int32(lo),
        n_starts=jnp.int32(n_starts),
        horizon=jnp.int32(horizon),
    )


def initial_state(start: jax.Array, params: MabimParams, lookback: int) -> MabimState:
    """The state before the ``lookback``-day warm-up of an episode whose day 0 is row ``start``."""
    W, V, N = params.vlt_onehot.shape
    dt = params.init_stock.dtype
    zeros_hist = jnp.zeros((W, N, lookback), dt)
    zeros = jnp.zeros((W, N), dt)
    return MabimState(
        t=jnp.int32(-lookback),
        start=start.astype(jnp.int32),
        in_stock=params.init_stock,
        in_transit=zeros,
        pipeline=jnp.zeros((W, V, N), dt),
        demand_hist=zeros_hist,
        sale_hist=zeros_hist,
        replenish_hist=zeros_hist,
        excess=zeros,
        price=zeros,
        cost=zeros,
    )
