"""MABIM dynamics as pure JAX functions: replenish -> sell -> receive -> reward -> advance.

This follows the original ``ReplenishmentEnv`` (``VictorYXL/ReplenishmentEnv``, ``reward2``,
``equal_accept``, ``replenish_by_last_demand`` warm-up, ``integerization_sku``) step for step; the
semantics are summarised in ``shared/reference/mabim-semantics.md``. Notation: ``W`` warehouses in
config order (index 0 is the head, supplied by the super vendor; ``W-1`` is the tail, which sells
to consumers), ``N`` SKUs, ``L`` = 21 lookback days, ``D`` decisions per episode, ``t`` the day
within the episode (``-L..-1`` during the warm-up).

One day at ``t`` with order quantities ``q[W, N]``:

1. replenish: the head's order enters its arrival pipeline at ``t + vlt`` (dropped when that is
   ``>= D``) and its in-transit; every other warehouse's order becomes its upstream's demand for
   today, except on the last day (``t == D-1``) where the upstream's demand stays 0;
2. sell: ``sale = min(demand, in_stock)`` from the stock held before today's arrivals; unmet demand
   is lost; what a non-tail warehouse sells is shipped to its downstream (arrival at
   ``t + vlt[downstream]``, in-transit of the downstream);
3. receive: today's arrivals are accepted in one ratio ``min(free / total_arrived, 1)`` per
   warehouse, where ``free = capacity - sum(in_stock * volume)`` after today's sales; accepted
   quantities are floored; the rest is destroyed (``excess``);
4. reward (``reward2``): ``profit - excess_cost - order_cost - holding_cost - backlog_cost``.

Differences from the original, all deliberate and documented:

* the random train window is drawn from the JAX key, not Python's global ``random``;
* ``clip_negative_stock`` (default True): when stock already exceeds capacity, the original's
  negative acceptance ratio can destroy more of a SKU than it holds (negative stock); we cap the
  destroyed amount at the SKU's stock. With ``clip_negative_stock=False`` the original arithmetic
  is reproduced bit for bit, negative stock included.

In float64 (``jax.config.update("jax_enable_x64", True)`` and ``precision="float64"``) the floors
and costs agree exactly with the original implementation; float32 (the default) is faster and can
move a floor boundary by one unit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs_jax.core import EnvSpec, MaskContext
from envs_jax.mabim import features
from envs_jax.mabim.config import MabimConfig
from envs_jax.mabim.data import MabimTables

REWARD_COMPONENTS = ("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost")
SPLITS = ("train", "validation", "test")


class ActionError(ValueError):
    """Actions of the wrong shape, type or range."""


@struct.dataclass
class MabimParams:
    """Device arrays of one scenario and split. Data rows cover every date of the data source.

    Shapes: ``price``/``cost`` ``[W, T, N]``, ``demand`` ``[T, N]`` (tail), per-SKU statics ``[W, N]``.
    ``start_lo`` is the data row of day 0 of the first allowed window, ``n_starts`` the number of
    allowed windows (1 for validation/test), ``horizon`` the decisions per episode ``D``.
    """

    price: jax.Array
    cost: jax.Array
    demand: jax.Array
    init_stock: jax.Array
    vlt: jax.Array
    vlt_onehot: jax.Array  # [W, V, N]: 1 where pipeline slot == vlt
    capacity: jax.Array  # [W]
    volume: jax.Array  # [N]
    holding_cost: jax.Array  # [W, N] per unit per day
    unit_order_cost: jax.Array  # [W, N]
    backlog_ratio: jax.Array  # scalar
    overflow_cost_ratio: jax.Array  # scalar
    action_values: jax.Array  # [A]
    lookback: jax.Array  # [W, N] filled with L: a full runtime divisor, see demand_mean
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


class MabimEnv:
    """One MABIM scenario: static sizes on the Python side, data in :class:`MabimParams`.

    Use :func:`envs_jax.make` (``"mabim/standard-100"``) rather than building this directly.
    ``reset`` / ``step`` / ``mask_context`` are pure and can be jitted and vmapped.
    """

    def __init__(self, config: MabimConfig, tables: MabimTables) -> None:
        self.config = config
        self.tables = tables
        self.W = len(config.warehouses)
        self.N = len(tables.sku_ids)
        self.L = config.lookback
        self.A = len(config.action_values)
        self.dtype = jnp.float64 if config.precision == "float64" else jnp.float32
        if config.precision == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "precision='float64' needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
                "(or set JAX_ENABLE_X64=1) before building the environment"
            )
        vlt = np.stack([tables.vlt[s] for s in config.warehouses])
        self.V = int(vlt.max()) + 1
        self._split_rows = {s: self._window(s) for s in SPLITS}
        self._params: dict[str, MabimParams] = {}
        self.spec = self._make_spec()

    # ------------------------------------------------------------------ set-up

    def _window(self, split: str) -> tuple[int, int, int]:
        """(first start row, number of starts, horizon) of a split; checks the data cover it."""
        cfg, tabs = self.config, self.tables
        first, last = cfg.split_dates(split)
        lo, hi = tabs.date_index(first), tabs.date_index(last)
        span = hi - lo + 1
        if split == "train" and cfg.random_window:
            horizon = cfg.horizon
            if span < horizon:
                raise ValueError(
                    f"{cfg.name}: the train split has {span} days, fewer than the horizon {horizon}"
                )
            n_starts = span - horizon + 1
        else:
            horizon, n_starts = span, 1
        if lo - self.L < 0:
            raise ValueError(
                f"{cfg.name}: the {split} split starts on row {lo} of the data but the {self.L}-day warm-up "
                f"needs earlier days; the data start on {tabs.dates[0]}"
            )
        return lo, n_starts, horizon

    def default_params(self, split: str = "train") -> MabimParams:
        """Device arrays for a split (``train``, ``validation``, ``test``); cached per split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if split not in self._params:
            self._params[split] = self._build_params(split)
        return self._params[split]

    def _build_params(self, split: str) -> MabimParams:
        cfg, tabs, dt = self.config, self.tables, self.dtype
        lo, n_starts, horizon = self._split_rows[split]
        price = np.stack([tabs.prices[t] for t in cfg.price_tables])  # [W, T, N]
        cost = np.stack([tabs.prices[t] for t in cfg.cost_tables])
        vlt = np.stack([tabs.vlt[s] for s in cfg.warehouses])
        init_stock = np.stack([tabs.init_stock[s] for s in cfg.warehouses])
        onehot = (np.arange(self.V)[None, :, None] == vlt[:, None, :]).astype(np.float64)
        volume = np.full(self.N, cfg.volume)
        storage = np.asarray(cfg.unit_storage_cost, dtype=np.float64).reshape(-1, 1)
        holding = cfg.basic_holding_cost + storage * volume[None, :]
        holding = np.broadcast_to(holding, (self.W, self.N))
        as_f = lambda x: jnp.asarray(np.asarray(x, dtype=np.float64), dtype=dt)  # noqa: E731
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
            unit_order_cost=as_f(np.full((self.W, self.N), cfg.unit_order_cost)),
            backlog_ratio=as_f(cfg.backlog_ratio),
            overflow_cost_ratio=as_f(cfg.overflow_cost_ratio),
            action_values=as_f(cfg.action_values),
            lookback=as_f(np.full((self.W, self.N), self.L)),
            start_lo=jnp.int32(lo),
            n_starts=jnp.int32(n_starts),
            horizon=jnp.int32(horizon),
        )

    def _make_spec(self) -> EnvSpec:
        cfg = self.config
        n_agents = self.W * self.N
        return EnvSpec(
            name=cfg.name,
            n_agents=n_agents,
            obs_dim=features.obs_dim(self.W, self.L),
            n_actions=self.A,
            agent_shape=(self.W, self.N),
            action_values=tuple(float(v) for v in cfg.action_values),
            action_names=tuple(f"x{v:g}" for v in cfg.action_values),
            reward_components=REWARD_COMPONENTS,
            group_names=tuple(cfg.warehouses),
            agent_group=np.repeat(np.arange(self.W), self.N),
            episode_length={s: self._split_rows[s][2] for s in SPLITS},
            context_fields=features.MASK_CONTEXT_FIELDS,
            dims={"W": self.W, "N": self.N, "L": self.L, "A": self.A},
            is_jax=True,
            description=cfg.description(self.N),
            data_source=self.tables.source,
        )

    # ------------------------------------------------------------------ dynamics

    def _initial_state(self, start: jax.Array, params: MabimParams) -> MabimState:
        W, N, L, V, dt = self.W, self.N, self.L, self.V, self.dtype
        zeros_hist = jnp.zeros((W, N, L), dt)
        return MabimState(
            t=jnp.int32(-L),
            start=start.astype(jnp.int32),
            in_stock=params.init_stock,
            in_transit=jnp.zeros((W, N), dt),
            pipeline=jnp.zeros((W, V, N), dt),
            demand_hist=zeros_hist,
            sale_hist=zeros_hist,
            replenish_hist=zeros_hist,
            excess=jnp.zeros((W, N), dt),
            price=jnp.zeros((W, N), dt),
            cost=jnp.zeros((W, N), dt),
        )

    def simulate_day(
        self, state: MabimState, quantity: jax.Array, params: MabimParams
    ) -> tuple[MabimState, dict[str, jax.Array], dict[str, jax.Array]]:
        """Simulate one day given integer order quantities ``[W, N]`` (already floored).

        Returns ``(next_state, components, flows)``: ``components`` maps each reward component to
        ``[W, N]``; ``flows`` holds the day's ``demand``, ``sale``, ``replenish``, ``arrived``,
        ``accepted`` and ``excess`` (all ``[W, N]``), for tests and diagnostics.
        """
        t, D = state.t, params.horizon
        row = state.start + t
        price = jax.lax.dynamic_index_in_dim(params.price, row, axis=1, keepdims=False)  # [W, N]
        cost = jax.lax.dynamic_index_in_dim(params.cost, row, axis=1, keepdims=False)
        consumer = jax.lax.dynamic_index_in_dim(params.demand, row, axis=0, keepdims=False)  # [N]
        last_day = t == D - 1

        # (1) replenish: the downstream's order is the upstream's demand (not on the last day)
        upstream_demand = jnp.where(last_day, 0.0, quantity[1:])
        demand = jnp.concatenate([upstream_demand, consumer[None, :]], axis=0)

        # (2) sell from the stock held before today's arrivals
        sale = jnp.minimum(demand, state.in_stock)
        in_stock = state.in_stock - sale

        # goods leaving for each warehouse today: the head's order, the upstream's sales
        inbound = jnp.concatenate([quantity[:1], sale[:-1]], axis=0) if self.W > 1 else quantity
        in_time = (t + params.vlt < D).astype(self.dtype)  # arrivals at or after D are dropped
        pipeline = state.pipeline + params.vlt_onehot * (inbound * in_time)[:, None, :]
        in_transit = state.in_transit + inbound

        # (3) receive today's arrivals, one acceptance ratio per warehouse
        arrived = pipeline[:, 0, :]
        in_transit = in_transit - arrived
        free = params.capacity - jnp.sum(in_stock * params.volume, axis=1)
        total = jnp.sum(arrived, axis=1)
        safe_total = jnp.where(total > 0, total, 1.0)
        ratio = jnp.where(total > 0, jnp.minimum(free / safe_total, 1.0), 0.0)
        accepted = jnp.floor(arrived * ratio[:, None])
        if self.config.clip_negative_stock:
            accepted = jnp.maximum(accepted, -in_stock)
        excess = arrived - accepted
        in_stock = in_stock + accepted

        # (4) reward2
        margin = price - cost
        profit = sale * margin
        excess_cost = cost * excess * params.overflow_cost_ratio
        order_cost = params.unit_order_cost * (quantity > 0).astype(self.dtype)
        holding_cost = params.holding_cost * in_stock
        backlog = margin * (demand - sale) * params.backlog_ratio
        backlog_cost = jnp.where(backlog > 0, backlog, 0.0)
        components = {
            "profit": profit,
            "excess_cost": excess_cost,
            "order_cost": order_cost,
            "holding_cost": holding_cost,
            "backlog_cost": backlog_cost,
        }
        flows = {
            "demand": demand,
            "sale": sale,
            "replenish": quantity,
            "arrived": arrived,
            "accepted": accepted,
            "excess": excess,
        }

        # (5) advance
        push = lambda hist, x: jnp.concatenate([hist[..., 1:], x[..., None]], axis=-1)  # noqa: E731
        nxt = MabimState(
            t=t + 1,
            start=state.start,
            in_stock=in_stock,
            in_transit=in_transit,
            pipeline=jnp.concatenate([pipeline[:, 1:], jnp.zeros_like(pipeline[:, :1])], axis=1),
            demand_hist=push(state.demand_hist, demand),
            sale_hist=push(state.sale_hist, sale),
            replenish_hist=push(state.replenish_hist, quantity),
            excess=excess,
            price=price,
            cost=cost,
        )
        return nxt, components, flows

    def demand_mean(self, state: MabimState, params: MabimParams) -> jax.Array:
        """Mean demand of the previous ``L`` days ``[W, N]`` (the original's ``np.average``)."""
        return self._mean(features.window_sums(state).demand, params)

    @staticmethod
    def _mean(total: jax.Array, params: MabimParams) -> jax.Array:
        """``total / L`` as a true IEEE division, also under ``vmap`` with shared ``params``.

        XLA rewrites a division by a constant or by a broadcast operand into a multiplication by
        its reciprocal, which rounds differently and can move a floor boundary by one unit. The
        divisor is therefore a runtime array (``params.lookback``) made to depend on ``total``
        (``+ 0 * total``; XLA does not fold ``x * 0`` for floats), so that under ``vmap`` it is a
        batched array and never a broadcast.
        """
        return total / (params.lookback + 0.0 * total)

    def order_quantity(
        self, state: MabimState, actions: jax.Array, params: MabimParams
    ) -> jax.Array:
        """Integer order quantities ``[W, N]`` for actions ``[n_agents]`` (indices or multipliers)."""
        return self._quantity(actions, self.demand_mean(state, params), params)

    def _quantity(
        self, actions: jax.Array, demand_mean: jax.Array, params: MabimParams
    ) -> jax.Array:
        actions = jnp.reshape(actions, (self.W, self.N))
        if self.config.continuous:
            multiplier = actions.astype(self.dtype)
        else:
            multiplier = params.action_values[actions]
        return jnp.floor(multiplier * demand_mean)

    def warm_up(self, state: MabimState, params: MabimParams) -> MabimState:
        """The original's ``replenish_by_last_demand``: L days ordering yesterday's demand."""

        def day(s: MabimState, _: Any) -> tuple[MabimState, None]:
            s, _, _ = self.simulate_day(s, jnp.floor(s.demand_hist[..., -1]), params)
            return s, None

        state, _ = jax.lax.scan(day, state, None, length=self.L)
        return state

    def reset_to(self, start: jax.Array, params: MabimParams) -> tuple[jax.Array, MabimState]:
        """Reset to a given data row for day 0 (warm-up included); returns ``(obs, state)``."""
        state = self.warm_up(self._initial_state(jnp.asarray(start), params), params)
        return self.observe(state, params), state

    def reset(self, key: jax.Array, params: MabimParams) -> tuple[jax.Array, MabimState]:
        """Draw a window (train: uniform over the allowed starts), warm up, observe."""
        offset = jax.random.randint(key, (), 0, params.n_starts)
        return self.reset_to(params.start_lo + offset, params)

    def step(
        self, key: jax.Array, state: MabimState, actions: jax.Array, params: MabimParams
    ) -> tuple[jax.Array, MabimState, jax.Array, jax.Array, dict[str, Any]]:
        """One decision for all agents.

        Args:
            key: unused (the dynamics are deterministic given the data); kept for the API.
            state: current state.
            actions: ``[n_agents]`` (or ``[W, N]``) action indices into ``spec.action_values``
                (int), or non-negative multipliers when the scenario is ``continuous``.
            params: the split's parameters.

        Returns:
            ``(obs [n_agents, obs_dim], next_state, reward [n_agents], done, info)`` with
            ``info["components"][name]`` ``[n_agents]`` and ``info["flows"]`` ``[W, N]`` arrays.
        """
        del key
        self.check_actions(actions)
        sums = features.window_sums(state)
        quantity = self._quantity(
            actions, self._mean(sums.demand, params), params
        )  # demand_mean, sums reused
        nxt, components, flows = self.simulate_day(state, quantity, params)
        if self.dtype == jnp.float64:
            # exact mode: a select between each product and the subtractions stops the compiler
            # from contracting them into fused multiply-adds, which round differently from the
            # original's separate numpy operations
            components = {k: jnp.where(v != 0, v, 0.0) for k, v in components.items()}
        reward = (
            components["profit"]
            - components["excess_cost"]
            - components["order_cost"]
            - components["holding_cost"]
            - components["backlog_cost"]
        )
        done = nxt.t >= params.horizon
        info = {"components": {k: v.reshape(-1) for k, v in components.items()}, "flows": flows}
        sums = features.advance_window_sums(sums, state, flows["demand"], flows["sale"])
        obs = features.observation(self, nxt, params, sums)
        return obs, nxt, reward.reshape(-1), done, info

    def check_actions(self, actions: Any) -> None:
        """Raise :class:`ActionError` for a wrong shape/dtype, and for out-of-range values
        when the actions are concrete (outside ``jit``); under ``jit`` only shape and dtype."""
        shape = tuple(np.shape(actions))
        if shape not in ((self.W * self.N,), (self.W, self.N)):
            raise ActionError(
                f"{self.config.name}: actions must have shape ({self.W * self.N},) or ({self.W}, {self.N}), got {shape}"
            )
        dtype = jnp.result_type(actions)
        if not self.config.continuous and not jnp.issubdtype(dtype, jnp.integer):
            raise ActionError(
                f"{self.config.name}: discrete actions are integer indices into the {self.A} multipliers, got "
                f"{dtype}; build the scenario with continuous=True to pass multipliers"
            )
        if isinstance(actions, jax.core.Tracer):
            return
        a = np.asarray(actions)
        if self.config.continuous:
            if not np.all(np.isfinite(a)) or (a < 0).any():
                raise ActionError(
                    f"{self.config.name}: continuous multipliers must be finite and >= 0"
                )
        elif a.size and (a.min() < 0 or a.max() >= self.A):
            raise ActionError(
                f"{self.config.name}: action indices must lie in [0, {self.A - 1}], got min {a.min()} max {a.max()}"
            )

    # ------------------------------------------------------------------ views

    def observe(self, state: MabimState, params: MabimParams) -> jax.Array:
        """Per-agent features ``[n_agents, obs_dim]`` of the day just simulated."""
        return features.observation(self, state, params)

    def mask_context(self, state: MabimState, params: MabimParams) -> MaskContext:
        """The named arrays a mask function may read (see ``features.MASK_CONTEXT_FIELDS``)."""
        return features.mask_context(self, state, params)

    def __repr__(self) -> str:
        return f"MabimEnv({self.config.name}, W={self.W}, N={self.N}, data={self.tables.source})"


def replace_config(env: MabimEnv, **changes: Any) -> MabimEnv:
    """A new environment with some config fields changed and the same data tables."""
    return MabimEnv(dataclasses.replace(env.config, **changes), env.tables)
