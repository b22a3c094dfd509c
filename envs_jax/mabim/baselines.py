"""Operations-research baselines for MABIM, vectorised in JAX.

A *policy* here is a pure function ``policy(state, params) -> quantity [W, N]``: the integer order
quantities of one day, given the state after the previous day (the same inputs a learned policy
sees). Episodes run with ``lax.scan`` through :meth:`MabimEnv.simulate_day`; grid searches vmap
whole episodes over candidate parameters (and training windows) in one jitted call.

Baselines (names accepted by :func:`run_baseline`):

``zero``
    never order (after the warm-up).
``constant``
    order ``floor(1.0 * m)`` every day, ``m`` = the warehouse's 21-day mean demand.
``random``
    a uniformly random one of the 34 discrete multipliers per agent and day (from a JAX key).
``base_stock_static`` / ``base_stock_dynamic``
    order up to a level: ``q = floor(max(S - in_stock - in_transit, 0))`` with
    ``S[w, n] = dbar[n] * (vlt[w, n] + 1 + k[n])``: the mean tail demand ``dbar`` covers the lead
    time plus the day of the order, and ``k`` is a per-SKU safety stock in days of mean demand.
    *static*: ``dbar`` is the mean tail demand over the whole training split and ``k`` is chosen per
    SKU by a grid search over :data:`SAFETY_DAYS` on random training windows; ``S`` is then held
    fixed on the evaluation split. *dynamic*: ``dbar`` is re-estimated every 7 days from the tail
    demand of the previous 21 days (a rolling window); ``k`` is searched the same way with the
    dynamic rule.
``sS_hindsight`` / ``sS_static``
    the original ``search_sS.py``: with ``x = (in_stock + in_transit) / (m + 1e-4)`` (days of
    cover), order ``floor((S - x) * m)`` when ``x < s``, else nothing. ``S`` and ``s`` come from the
    169 pairs ``S in {0..12}``, ``s in {0, 0.5, .., S}``; every pair is one episode applied to all
    SKUs, and each SKU keeps the pair with the best episode reward summed over warehouses (used in
    every warehouse). *hindsight* searches on the evaluation split itself; *static* searches on
    random training windows drawn from a JAX key, then runs on the evaluation split.

Deviations from the original MABIM baselines, on purpose:

* Base stock: the original solves a per-SKU integer programme (cvxpy + GLPK) on oracle data of one
  training window (static) or on all history, re-solved every 7 days (dynamic); its objective
  ignores order cost, capacity, backlog and excess. We have no solver dependency: the level is the
  closed-form ``dbar * (vlt + 1 + k)`` with ``k`` searched on training windows against the
  environment's own reward (all costs included). Upstream warehouses use the tail demand too, as
  the original programme does.
* The original base-stock policy goes through ``demand_mean_continuous`` with ``action =
  target / (m + 1e-5)``, which floors to ``target - 1`` for every positive target and orders
  nothing when ``m = 0``. We order ``floor(target)`` exactly; the quirk is not reproduced.
* Base-stock safety days are selected per SKU the way the original (S, s) search selects its
  pairs: from episodes in which every SKU uses the same candidate, scored per SKU over warehouses.
  SKUs share the warehouse capacity, so the combined choice is not a joint optimum.
* ``sS_static`` evaluates all 169 pairs on the *same* training windows (common random numbers,
  ``n_windows`` of them, 8 by default) instead of one different window per pair drawn from Python's
  unseeded ``random``.
* Randomness (training windows, the random policy) comes from JAX keys.

Every result dict carries the data source: returns on synthetic data are not comparable with the
MABIM or eSpark papers.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.mabim.data import format_date
from envs_jax.mabim.env import REWARD_COMPONENTS, MabimEnv, MabimParams, MabimState

Policy = Callable[[MabimState, MabimParams], jax.Array]
"""``policy(state, params) -> order quantities [W, N]`` (integers as floats; floored and clipped
at 0 by the episode runner)."""

SS_EPS = 1e-4  # the original (S, s) search's guard against zero mean demand
SAFETY_DAYS: tuple[float, ...] = tuple(
    np.arange(-1.0, 8.01, 0.5).tolist()
)  # 19 base-stock candidates
REVIEW_PERIOD = 7  # dynamic base stock: days between re-estimations
ROLLING_WINDOW = 21  # dynamic base stock: days of tail demand per estimate
N_WINDOWS = 8  # training windows per grid search
BASELINES = (
    "zero",
    "constant",
    "random",
    "base_stock_static",
    "base_stock_dynamic",
    "sS_hindsight",
    "sS_static",
)


# ------------------------------------------------------------------------------------------
# Policies
# ------------------------------------------------------------------------------------------


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
    """Base stock whose level is re-estimated every ``period`` days from the last ``window`` days."""

    def policy(state: MabimState, params: MabimParams) -> jax.Array:
        level = base_stock_level(
            rolling_tail_mean(state, params, period, window), params.vlt, safety_days
        )
        return base_stock_quantity(level, state.in_stock, state.in_transit)

    return policy


def ss_quantity(
    S: jax.Array, s: jax.Array, inventory: jax.Array, demand_mean: jax.Array
) -> jax.Array:
    """The (S, s) order: with ``x = inventory / (m + 1e-4)``, ``floor((S - x) * m)`` if ``x < s`` else 0.

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


# ------------------------------------------------------------------------------------------
# Episodes and evaluation
# ------------------------------------------------------------------------------------------


def episode_components(
    env: MabimEnv, policy: Policy, params: MabimParams, start: jax.Array, length: int
) -> dict[str, jax.Array]:
    """Run one episode from data row ``start`` (warm-up included) for ``length`` decisions.

    Returns every reward component summed over the episode, ``[W, N]`` each (warm-up rewards are
    discarded, as in the original). Pure and jittable (``length`` must be static).
    """
    _, state = env.reset_to(start, params)
    shape = (env.W, env.N)

    def day(carry: tuple[MabimState, dict[str, jax.Array]], _: Any) -> tuple[Any, None]:
        state, totals = carry
        quantity = policy(state, params)
        if jnp.shape(quantity) != shape:
            raise ValueError(
                f"a MABIM policy must return order quantities of shape {shape}, got {jnp.shape(quantity)}"
            )
        quantity = jnp.maximum(jnp.floor(quantity.astype(env.dtype)), 0.0)
        nxt, components, _ = env.simulate_day(state, quantity, params)
        return (nxt, {k: totals[k] + components[k] for k in REWARD_COMPONENTS}), None

    zeros = {k: jnp.zeros(shape, env.dtype) for k in REWARD_COMPONENTS}
    (_, totals), _ = jax.lax.scan(day, (state, zeros), None, length=length)
    return totals


def net_reward(components: dict[str, jax.Array]) -> jax.Array:
    """``profit - excess_cost - order_cost - holding_cost - backlog_cost`` (reward2)."""
    return (
        components["profit"]
        - components["excess_cost"]
        - components["order_cost"]
        - components["holding_cost"]
        - components["backlog_cost"]
    )


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


# ------------------------------------------------------------------------------------------
# Grid search
# ------------------------------------------------------------------------------------------


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

    ``grid`` is a pytree whose leaves have a leading axis of ``G`` candidates; ``make_policy(theta)``
    builds the policy of one candidate. All ``G x len(starts)`` episodes run in one jitted,
    vmapped call (one trace of ``make_policy``).
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


def fit_ss(
    env: MabimEnv, params: MabimParams, starts: jax.Array
) -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """Per-SKU (S, s) from the 169-pair grid on the given windows; returns ``(S [N], s [N], scores)``."""
    S, s = ss_grid()
    grid = (jnp.asarray(S, env.dtype), jnp.asarray(s, env.dtype))
    scores = grid_scores(
        env, lambda theta: ss_policy(env, theta[0], theta[1]), grid, params, starts
    )
    best = best_per_sku(scores)
    return S[best], s[best], scores


def train_mean_demand(env: MabimEnv) -> jax.Array:
    """Mean tail demand ``[N]`` over every day of the training split."""
    train = env.default_params("train")
    lo = int(train.start_lo)
    hi = lo + int(train.n_starts) + int(train.horizon) - 1
    return jnp.mean(train.demand[lo:hi], axis=0)


def fit_base_stock(
    env: MabimEnv,
    key: jax.Array,
    dynamic: bool,
    n_windows: int = N_WINDOWS,
    safety_days: tuple[float, ...] = SAFETY_DAYS,
) -> tuple[np.ndarray, jax.Array]:
    """Per-SKU safety days ``k [N]`` searched on ``n_windows`` random training windows.

    Returns ``(k [N], scores [len(safety_days), N])``. Static levels use the training-split mean
    demand; dynamic levels the rolling estimate (see the module docstring).
    """
    train = env.default_params("train")
    grid = jnp.asarray(safety_days, env.dtype)
    if dynamic:
        _check_history(env, train)
        make = dynamic_base_stock_policy
    else:
        mean = train_mean_demand(env)
        make = lambda k: base_stock_policy(base_stock_level(mean, train.vlt, k))  # noqa: E731
    scores = grid_scores(env, make, grid, train, training_starts(train, key, n_windows))
    return np.asarray(safety_days)[best_per_sku(scores)], scores


def static_levels(env: MabimEnv, safety_days: np.ndarray) -> jax.Array:
    """Fixed base-stock levels ``[W, N]`` from the training-split mean demand and safety days ``[N]``."""
    train = env.default_params("train")
    return base_stock_level(train_mean_demand(env), train.vlt, jnp.asarray(safety_days, env.dtype))


def _check_history(env: MabimEnv, params: MabimParams, window: int = ROLLING_WINDOW) -> None:
    if int(params.start_lo) < window:
        raise ValueError(
            f"{env.spec.name}: dynamic base stock reads {window} days before each episode; the split starts "
            f"on data row {int(params.start_lo)}: move the split dates later"
        )


# ------------------------------------------------------------------------------------------
# Named baselines
# ------------------------------------------------------------------------------------------


def baseline_policy(
    env: MabimEnv,
    name: str,
    key: jax.Array | None = None,
    split: str = "test",
    n_windows: int = N_WINDOWS,
) -> tuple[Policy, dict[str, Any]]:
    """Fit (where needed) and return a named baseline's policy and what was fitted.

    Args:
        env: the scenario.
        name: one of :data:`BASELINES`.
        key: JAX key for training windows and the random policy (default ``jax.random.key(0)``).
        split: the evaluation split (``sS_hindsight`` searches on it).
        n_windows: training windows per grid search (static searches).

    Returns:
        ``(policy, fit)`` where ``fit`` holds the chosen per-SKU parameters as lists and the
        number of episodes simulated for the search.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown MABIM baseline {name!r}; valid: {', '.join(BASELINES)}")
    key = jax.random.key(0) if key is None else key
    if name == "zero":
        return zero_policy(env), {}
    if name == "constant":
        return constant_policy(env, 1.0), {"multiplier": 1.0}
    if name == "random":
        return random_policy(env, key), {}
    if name in ("base_stock_static", "base_stock_dynamic"):
        dynamic = name == "base_stock_dynamic"
        k, _ = fit_base_stock(env, key, dynamic=dynamic, n_windows=n_windows)
        fit = {"safety_days": k.tolist(), "search_episodes": len(SAFETY_DAYS) * n_windows}
        if dynamic:
            _check_history(env, env.default_params(split))
            return dynamic_base_stock_policy(jnp.asarray(k, env.dtype)), fit
        return base_stock_policy(static_levels(env, k)), fit
    if name == "sS_hindsight":
        params = env.default_params(split)
        S, s, _ = fit_ss(env, params, params.start_lo)
        return ss_policy(env, jnp.asarray(S), jnp.asarray(s)), {
            "S": S.tolist(),
            "s": s.tolist(),
            "search_episodes": len(ss_grid()[0]),
        }
    train = env.default_params("train")
    S, s, _ = fit_ss(env, train, training_starts(train, key, n_windows))
    return ss_policy(env, jnp.asarray(S), jnp.asarray(s)), {
        "S": S.tolist(),
        "s": s.tolist(),
        "search_episodes": len(ss_grid()[0]) * n_windows,
    }


def run_baseline(
    env: MabimEnv,
    name: str,
    key: jax.Array | None = None,
    split: str = "test",
    n_windows: int = N_WINDOWS,
) -> dict[str, Any]:
    """Fit and evaluate a named baseline on a split; :func:`evaluate`'s dict plus ``fit`` and
    ``seconds`` (wall time of fitting and evaluation, compilation included)."""
    t0 = time.perf_counter()
    key = jax.random.key(0) if key is None else key
    fit_key, eval_key = jax.random.split(key)
    policy, fit = baseline_policy(env, name, fit_key, split, n_windows)
    result = evaluate(env, policy, split, key=eval_key, name=name)
    result["fit"] = fit
    result["seconds"] = time.perf_counter() - t0
    return result
