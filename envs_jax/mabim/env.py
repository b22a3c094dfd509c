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

from envs_jax.core import EnvSpec, MaskContext
from envs_jax.mabim import features, window
from envs_jax.mabim.config import MabimConfig
from envs_jax.mabim.data import MabimTables
from envs_jax.mabim.params import (
    SPLITS,
    MabimParams,
    MabimState,
    build_params,
    initial_state,
    lead_times,
    split_rows,
)

REWARD_COMPONENTS = ("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost")


class ActionError(ValueError):
    """Actions of the wrong shape, type or range."""


def net_reward(components: dict[str, Any]) -> Any:
    """``reward2 = profit - excess_cost - order_cost - holding_cost - backlog_cost``.

    Works on JAX and NumPy arrays alike (per-agent components, episode sums, ...).
    """
    return (
        components["profit"]
        - components["excess_cost"]
        - components["order_cost"]
        - components["holding_cost"]
        - components["backlog_cost"]
    )


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
                "precision='float64' needs 64-bit JAX: call "
                "jax.config.update('jax_enable_x64', True) (or set JAX_ENABLE_X64=1) before "
                "building the environment"
            )
        self.V = int(lead_times(config, tables).max()) + 1
        self._split_rows = {s: split_rows(config, tables, s) for s in SPLITS}
        self._params: dict[str, MabimParams] = {}
        self.spec = self._make_spec()

    # ------------------------------------------------------------------ set-up

    @property
    def data_files(self) -> list[dict[str, Any]]:
        """The files the scenario's data came from (``path``, ``sha256``, ``bytes`` each)."""
        return [f.to_dict() for f in self.tables.files]

    def default_params(self, split: str = "train") -> MabimParams:
        """Device arrays for a split (``train``, ``validation``, ``test``); cached per split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if split not in self._params:
            rows = self._split_rows[split]
            self._params[split] = build_params(self.config, self.tables, rows, self.dtype)
        return self._params[split]

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
        nxt = MabimState(
            t=t + 1,
            start=state.start,
            in_stock=in_stock,
            in_transit=in_transit,
            pipeline=jnp.concatenate([pipeline[:, 1:], jnp.zeros_like(pipeline[:, :1])], axis=1),
            demand_hist=_push(state.demand_hist, demand),
            sale_hist=_push(state.sale_hist, sale),
            replenish_hist=_push(state.replenish_hist, quantity),
            excess=excess,
            price=price,
            cost=cost,
        )
        return nxt, components, flows

    def demand_mean(self, state: MabimState, params: MabimParams) -> jax.Array:
        """Mean demand of the previous ``L`` days ``[W, N]`` (the original's ``np.average``).

        The one expression (:func:`envs_jax.mabim.window.demand_mean`) that the order
        quantities and the mask context's ``demand_mean`` use too.
        """
        return window.demand_mean(window.window_sums(state), params)

    def order_quantity(
        self, state: MabimState, actions: jax.Array, params: MabimParams
    ) -> jax.Array:
        """Integer order quantities ``[W, N]`` for actions ``[n_agents]`` (indices/multipliers)."""
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
        state = initial_state(jnp.asarray(start), params, self.L)
        state = self.warm_up(state, params)
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
        sums = window.window_sums(state)  # reused below for the observation
        quantity = self._quantity(actions, window.demand_mean(sums, params), params)
        nxt, components, flows = self.simulate_day(state, quantity, params)
        if self.dtype == jnp.float64:
            # exact mode: a select between each product and the subtractions stops the compiler
            # from contracting them into fused multiply-adds, which round differently from the
            # original's separate numpy operations
            components = {k: jnp.where(v != 0, v, 0.0) for k, v in components.items()}
        reward = net_reward(components)
        done = nxt.t >= params.horizon
        info = {"components": {k: v.reshape(-1) for k, v in components.items()}, "flows": flows}
        sums = window.advance_window_sums(sums, state, flows["demand"], flows["sale"])
        obs = features.observation(self, nxt, params, sums)
        return obs, nxt, reward.reshape(-1), done, info

    def check_actions(self, actions: Any) -> None:
        """Raise :class:`ActionError` for a wrong shape/dtype, and for out-of-range values
        when the actions are concrete (outside ``jit``); under ``jit`` only shape and dtype."""
        shape = tuple(np.shape(actions))
        if shape not in ((self.W * self.N,), (self.W, self.N)):
            raise ActionError(
                f"{self.config.name}: actions must have shape ({self.W * self.N},) or "
                f"({self.W}, {self.N}), got {shape}"
            )
        dtype = jnp.result_type(actions)
        if not self.config.continuous and not jnp.issubdtype(dtype, jnp.integer):
            raise ActionError(
                f"{self.config.name}: discrete actions are integer indices into the {self.A} "
                f"multipliers, got {dtype}; build the scenario with continuous=True to pass "
                "multipliers"
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
                f"{self.config.name}: action indices must lie in [0, {self.A - 1}], got min "
                f"{a.min()} max {a.max()}"
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


def _push(hist: jax.Array, x: jax.Array) -> jax.Array:
    """Drop the oldest day of a ``[..., L]`` history and append ``x``."""
    return jnp.concatenate([hist[..., 1:], x[..., None]], axis=-1)


def replace_config(env: MabimEnv, **changes: Any) -> MabimEnv:
    """A new environment with some config fields changed and the same data tables."""
    return MabimEnv(dataclasses.replace(env.config, **changes), env.tables)
