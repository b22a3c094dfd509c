"""Running MABIM policies: whole episodes, their summaries, and grid searches over candidates.

:func:`episode_components` runs one episode of a :data:`~envs_jax.mabim.policies.Policy` with
``lax.scan`` through :meth:`MabimEnv.simulate_day`; :func:`evaluate` runs and summarises one
episode of a split; :func:`episode_trace` / :func:`trace` keep the day-by-day account of one
(components and flows per day and warehouse, for figures); :func:`grid_scores` vmaps whole
episodes over candidate parameters and training windows in one jitted call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.mabim.data import format_date
from envs_jax.mabim.env import REWARD_COMPONENTS, MabimEnv, net_reward
from envs_jax.mabim.params import MabimParams, MabimState
from envs_jax.mabim.policies import Policy

N_WINDOWS = 8  # training windows per grid search


def episode_components(
    env: MabimEnv, policy: Policy, params: MabimParams, start: jax.Array, length: int
) -> dict[str, jax.Array]:
    """Run one episode from data row ``start`` (warm-up included) for ``length`` decisions.

    Returns every reward component summed over the episode, ``[W, N]`` each (warm-up rewards are
    discarded, as in the original). Pure and jittable (``length`` must be static).
    """
    _, state = env.reset_to(start, params)

    def day(carry: tuple[MabimState, dict[str, jax.Array]], _: Any) -> tuple[Any, None]:
        state, totals = carry
        nxt, components, _ = _policy_day(env, policy, state, params)
        return (nxt, {k: totals[k] + components[k] for k in REWARD_COMPONENTS}), None

    zeros = {k: jnp.zeros((env.W, env.N), env.dtype) for k in REWARD_COMPONENTS}
    (_, totals), _ = jax.lax.scan(day, (state, zeros), None, length=length)
    return totals


def _policy_day(
    env: MabimEnv, policy: Policy, state: MabimState, params: MabimParams
) -> tuple[MabimState, dict[str, jax.Array], dict[str, jax.Array]]:
    """One day of ``policy``: its quantities checked, floored at zero, simulated."""
    shape = (env.W, env.N)
    quantity = policy(state, params)
    if jnp.shape(quantity) != shape:
        raise ValueError(
            f"a MABIM policy must return order quantities of shape {shape}, "
            f"got {jnp.shape(quantity)}"
        )
    quantity = jnp.maximum(jnp.floor(quantity.astype(env.dtype)), 0.0)
    return env.simulate_day(state, quantity, params)


def episode_trace(
    env: MabimEnv, policy: Policy, params: MabimParams, start: jax.Array, length: int
) -> dict[str, dict[str, jax.Array]]:
    """The day-by-day account of one episode from data row ``start`` (warm-up included).

    Returns ``{"components": {name: [length, W]}, "flows": {name: [length, W]}}``: every reward
    component and every flow of :meth:`MabimEnv.simulate_day` (demand, sale, excess, ...) summed
    over SKUs, per day and warehouse. Pure and jittable (``length`` must be static).
    """
    _, state = env.reset_to(start, params)

    def day(state: MabimState, _: Any) -> tuple[MabimState, dict[str, dict[str, jax.Array]]]:
        nxt, components, flows = _policy_day(env, policy, state, params)
        sums = {
            "components": {k: v.sum(axis=1) for k, v in components.items()},
            "flows": {k: v.sum(axis=1) for k, v in flows.items()},
        }
        return nxt, sums

    _, days = jax.lax.scan(day, state, None, length=length)
    return days


def trace(
    env: MabimEnv, policy: Policy, split: str = "test", *, key: jax.Array | None = None
) -> dict[str, Any]:
    """:func:`episode_trace` of one episode of a split as plain lists (JSON-ready): ``{"split",
    "days", "return", "reward": [[W] per day], "components": {name: [[W] per day]}, "flows":
    {...}}`` (``reward``: the net reward per day and warehouse, in float64)."""
    params = env.default_params(split)
    length = int(params.horizon)
    run = jax.jit(functools.partial(episode_trace, env, policy, length=length))
    days = jax.device_get(run(params, _episode_start(params, key)))
    as_lists = {
        part: {k: np.asarray(v, dtype=np.float64).tolist() for k, v in days[part].items()}
        for part in ("components", "flows")
    }
    reward = net_reward({k: np.asarray(v, np.float64) for k, v in days["components"].items()})
    return {
        "split": split,
        "days": length,
        "return": float(reward.sum()),
        "reward": reward.tolist(),
        **as_lists,
    }


def _split_of(env: MabimEnv, params: MabimParams) -> str:
    for split in ("test", "validation", "train"):
        if env.default_params(split) is params:
            return split
    return "custom"


def summarize(env: MabimEnv, components: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """A JSON-ready dict: total return, components summed, and per warehouse return + components.

    ``components`` maps each reward component to ``[W, N]`` episode sums; sums are taken in float64
    on the host.
    """
    comp = {k: np.asarray(components[k], dtype=np.float64) for k in REWARD_COMPONENTS}
    per_wh_comp = {k: v.sum(axis=1) for k, v in comp.items()}
    per_wh_ret = net_reward(per_wh_comp)
    per_warehouse = {
        name: {
            "return": float(per_wh_ret[w]),
            **{k: float(per_wh_comp[k][w]) for k in REWARD_COMPONENTS},
        }
        for w, name in enumerate(env.config.warehouses)
    }
    return {
        **meta,
        "scenario": env.spec.name,
        "data_source": env.spec.data_source,
        "return": float(per_wh_ret.sum()),
        "components": {k: float(per_wh_comp[k].sum()) for k in REWARD_COMPONENTS},
        "per_warehouse": per_warehouse,
    }


def evaluate(
    env: MabimEnv,
    policy: Policy,
    split: str = "test",
    *,
    key: jax.Array | None = None,
    params: MabimParams | None = None,
    name: str = "policy",
) -> dict[str, Any]:
    """Run ``policy`` for one episode of a split and summarise it (see :func:`summarize`).

    Args:
        env: the scenario.
        policy: ``policy(state, params) -> quantities [W, N]``.
        split: ``train``, ``validation`` or ``test`` (ignored when ``params`` is given).
        key: draws the window on a split with several (train); validation/test have one.
        params: explicit parameters instead of ``env.default_params(split)``.
        name: the policy's label in the result.

    Returns:
        ``{"policy", "split", "start_date", "days", "scenario", "data_source", "return",
        "components": {name: total}, "per_warehouse": {warehouse: {"return", <components>}}}``.
    """
    params = env.default_params(split) if params is None else params
    split = _split_of(env, params)
    start = _episode_start(params, key)
    length = int(params.horizon)
    run = jax.jit(functools.partial(episode_components, env, policy, length=length))
    totals = jax.device_get(run(params, start))
    return summarize(
        env,
        totals,
        policy=name,
        split=split,
        start_date=format_date(env.tables.dates[int(start)]),
        days=length,
    )


def _episode_start(params: MabimParams, key: jax.Array | None) -> jax.Array:
    if int(params.n_starts) == 1:
        return params.start_lo
    if key is None:
        raise ValueError(
            "this split has several episode windows: pass key=jax.random.key(...) to draw one"
        )
    return params.start_lo + jax.random.randint(key, (), 0, params.n_starts)


def training_starts(params: MabimParams, key: jax.Array, n_windows: int = N_WINDOWS) -> jax.Array:
    """``n_windows`` episode start rows drawn uniformly from the split's allowed windows."""
    if n_windows < 1:
        raise ValueError(f"n_windows must be at least 1, got {n_windows}")
    return params.start_lo + jax.random.randint(key, (n_windows,), 0, params.n_starts)


def grid_scores(
    env: MabimEnv,
    make_policy: Callable[[Any], Policy],
    grid: Any,
    params: MabimParams,
    starts: jax.Array,
) -> jax.Array:
    """Per-SKU episode reward of every candidate, summed over warehouses and windows: ``[G, N]``.

    ``grid`` is a pytree whose leaves have a leading axis of ``G`` candidates;
    ``make_policy(theta)`` builds the policy of one candidate. All ``G x len(starts)`` episodes
    run in one jitted, vmapped call (one trace of ``make_policy``).
    """
    length = int(params.horizon)
    starts = jnp.atleast_1d(jnp.asarray(starts))
    n_candidates = jax.tree_util.tree_leaves(grid)[0].shape[0]
    # The demand-mean divisor gets one materialised copy per episode. Shared by all episodes, vmap
    # would broadcast it inside the program and XLA would rewrite x / broadcast(L) into
    # x * (1 / L), which moves floor boundaries (float64 would no longer match the original).
    # For the same reason params are a jit argument, never a closure constant.
    lookback = jnp.broadcast_to(
        params.lookback, (n_candidates, starts.shape[0], *params.lookback.shape)
    )

    def all_candidates(
        grid: Any, params: MabimParams, starts: jax.Array, lookback: jax.Array
    ) -> jax.Array:
        def one(theta: Any, start: jax.Array, lb: jax.Array) -> jax.Array:
            p = params.replace(lookback=lb)
            return net_reward(episode_components(env, make_policy(theta), p, start, length)).sum(
                axis=0
            )

        per_window = jax.vmap(
            lambda theta, lb: jax.vmap(lambda st, l: one(theta, st, l))(starts, lb)
        )(grid, lookback)
        return per_window.sum(axis=1)  # [G, N]

    return jax.jit(all_candidates)(grid, params, starts, lookback)


def best_per_sku(scores: jax.Array) -> np.ndarray:
    """Index of the best candidate for each SKU (``scores [G, N]``; ties go to the first)."""
    return np.asarray(jnp.argmax(scores, axis=0))
