"""MABIM order policies of the operations-research baselines, as pure JAX functions.

A *policy* is ``policy(state, params) -> quantity [W, N]``: the integer order quantities of one
day, given the state after the previous day (the same inputs a learned policy sees). Here: never
order, a constant or random demand-mean multiplier, base stock (order up to a fixed or rolling
level) and the original's (S, s) rule; :mod:`envs_jax.mabim.baselines` fits and names them.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.mabim.env import MabimEnv
from envs_jax.mabim.params import MabimParams, MabimState

Policy = Callable[[MabimState, MabimParams], jax.Array]
"""``policy(state, params) -> order quantities [W, N]`` (integers as floats; floored and clipped
at 0 by the episode runner)."""

SS_EPS = 1e-4  # the original (S, s) search's guard against zero mean demand
REVIEW_PERIOD = 7  # dynamic base stock: days between re-estimations
ROLLING_WINDOW = 21  # dynamic base stock: days of tail demand per estimate


def zero_policy(env: MabimEnv) -> Policy:
    """Never order."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        return jnp.zeros((env.W, env.N), env.dtype)

    return policy


def constant_policy(env: MabimEnv, multiplier: float | jax.Array = 1.0) -> Policy:
    """Order ``floor(multiplier * m)`` every day (``m``: 21-day mean demand of each warehouse)."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        return jnp.floor(jnp.asarray(multiplier, env.dtype) * env.demand_mean(state, params))

    return policy


def random_policy(env: MabimEnv, key: jax.Array) -> Policy:
    """A uniformly random discrete multiplier per agent and day; the draw depends on ``key`` and
    on the day's data row, so the policy stays a pure function of ``(state, params)``."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        day_key = jax.random.fold_in(key, state.start + state.t)
        index = jax.random.randint(day_key, (env.W, env.N), 0, params.action_values.shape[0])
        return jnp.floor(params.action_values[index] * env.demand_mean(state, params))

    return policy


def base_stock_quantity(level: jax.Array, in_stock: jax.Array, in_transit: jax.Array) -> jax.Array:
    """Order-up-to quantity ``floor(max(level - in_stock - in_transit, 0))`` (shapes broadcast)."""
    return jnp.floor(jnp.maximum(level - in_stock - in_transit, 0.0))


def base_stock_level(mean_demand: jax.Array, vlt: jax.Array, safety_days: jax.Array) -> jax.Array:
    """Level ``max(mean_demand * (vlt + 1 + safety_days), 0)``.

    Args:
        mean_demand: ``[N]`` (or ``[W, N]``) mean daily demand.
        vlt: ``[W, N]`` lead times.
        safety_days: ``[N]`` or a scalar: safety stock in days of mean demand.
    """
    return jnp.maximum(mean_demand * (vlt + 1.0 + safety_days), 0.0)


def base_stock_policy(levels: jax.Array) -> Policy:
    """Order up to fixed ``levels [W, N]`` every day."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        return base_stock_quantity(levels, state.in_stock, state.in_transit)

    return policy


def rolling_tail_mean(
    state: MabimState,
    params: MabimParams,
    period: int = REVIEW_PERIOD,
    window: int = ROLLING_WINDOW,
) -> jax.Array:
    """Mean tail demand ``[N]`` over the ``window`` days before the last re-estimation day.

    Re-estimation days are ``t = 0, period, 2 * period, ..`` of the episode; on day ``t`` the
    estimate of day ``t - t % period`` is used, so nothing later than yesterday is read.
    """
    day = state.t - state.t % period
    rows = jax.lax.dynamic_slice_in_dim(params.demand, state.start + day - window, window, axis=0)
    return jnp.mean(rows, axis=0)


def dynamic_base_stock_policy(
    safety_days: jax.Array, period: int = REVIEW_PERIOD, window: int = ROLLING_WINDOW
) -> Policy:
    """Base stock with the level re-estimated every ``period`` days from the last ``window``."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        level = base_stock_level(
            rolling_tail_mean(state, params, period, window), params.vlt, safety_days
        )
        return base_stock_quantity(level, state.in_stock, state.in_transit)

    return policy


def ss_quantity(
    S: jax.Array, s: jax.Array, inventory: jax.Array, demand_mean: jax.Array
) -> jax.Array:
    """The (S, s) order: ``floor((S - x) * m)`` if ``x < s`` else 0, ``x = inventory / (m + 1e-4)``.

    ``S`` and ``s`` are in days of mean demand ``m``; ``inventory`` is in stock plus in transit.
    """
    x = inventory / (demand_mean + SS_EPS)
    return jnp.where(x < s, jnp.floor((S - x) * demand_mean), 0.0)


def ss_policy(env: MabimEnv, S: jax.Array, s: jax.Array) -> Policy:
    """(S, s) with per-SKU ``S [N]``, ``s [N]`` (or scalars), the same in every warehouse."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        S_ = jnp.asarray(S, env.dtype)
        s_ = jnp.asarray(s, env.dtype)
        return ss_quantity(
            S_, s_, state.in_stock + state.in_transit, env.demand_mean(state, params)
        )

    return policy


def ss_grid() -> tuple[np.ndarray, np.ndarray]:
    """The 169 (S, s) pairs of the original search: ``S in {0..12}``, ``s in {0, 0.5, .., S}``."""
    pairs = [(S, s) for S in range(13) for s in np.arange(0.0, S + 0.25, 0.5)]
    S, s = np.array(pairs, dtype=np.float64).T
    return S, s
