"""Operations-research baselines for MABIM, vectorised in JAX.

Policies are pure functions ``policy(state, params) -> quantity [W, N]``
(:mod:`envs_jax.mabim.policies`); episodes, evaluation and the vmapped grid searches are in
:mod:`envs_jax.mabim.episodes`. This module fits the baselines' parameters and names them.

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

import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.mabim.env import REWARD_COMPONENTS, MabimEnv, net_reward
from envs_jax.mabim.episodes import (
    N_WINDOWS,
    best_per_sku,
    episode_components,
    evaluate,
    grid_scores,
    summarize,
    trace,
    training_starts,
)
from envs_jax.mabim.params import MabimParams
from envs_jax.mabim.policies import (
    REVIEW_PERIOD,
    ROLLING_WINDOW,
    SS_EPS,
    Policy,
    base_stock_level,
    base_stock_policy,
    base_stock_quantity,
    constant_policy,
    dynamic_base_stock_policy,
    random_policy,
    rolling_tail_mean,
    ss_grid,
    ss_policy,
    ss_quantity,
    zero_policy,
)

__all__ = [  # the names of this module before policies and episodes moved out
    "BASELINES",
    "N_WINDOWS",
    "REVIEW_PERIOD",
    "REWARD_COMPONENTS",
    "ROLLING_WINDOW",
    "SAFETY_DAYS",
    "SS_EPS",
    "Policy",
    "base_stock_level",
    "base_stock_policy",
    "base_stock_quantity",
    "baseline_policy",
    "best_per_sku",
    "constant_policy",
    "dynamic_base_stock_policy",
    "episode_components",
    "evaluate",
    "fit_base_stock",
    "fit_ss",
    "grid_scores",
    "net_reward",
    "random_policy",
    "rolling_tail_mean",
    "run_baseline",
    "ss_grid",
    "ss_policy",
    "ss_quantity",
    "static_levels",
    "summarize",
    "trace_baseline",
    "train_mean_demand",
    "training_starts",
    "zero_policy",
]

SAFETY_DAYS: tuple[float, ...] = tuple(np.arange(-1.0, 8.01, 0.5).tolist())  # 19 candidates
BASELINES = (
    "zero",
    "constant",
    "random",
    "base_stock_static",
    "base_stock_dynamic",
    "sS_hindsight",
    "sS_static",
)


def fit_ss(
    env: MabimEnv, params: MabimParams, starts: jax.Array
) -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """Per-SKU (S, s) from the 169-pair grid on the given windows.

    Returns ``(S [N], s [N], scores)``.
    """
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

        def make(k: jax.Array) -> Policy:
            return base_stock_policy(base_stock_level(mean, train.vlt, k))

    scores = grid_scores(env, make, grid, train, training_starts(train, key, n_windows))
    return np.asarray(safety_days)[best_per_sku(scores)], scores


def static_levels(env: MabimEnv, safety_days: np.ndarray) -> jax.Array:
    """Fixed base-stock levels ``[W, N]``: training-split mean demand, safety days ``[N]``."""
    train = env.default_params("train")
    return base_stock_level(train_mean_demand(env), train.vlt, jnp.asarray(safety_days, env.dtype))


def _check_history(env: MabimEnv, params: MabimParams, window: int = ROLLING_WINDOW) -> None:
    if int(params.start_lo) < window:
        raise ValueError(
            f"{env.spec.name}: dynamic base stock reads {window} days before each episode; the "
            f"split starts on data row {int(params.start_lo)}: move the split dates later"
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
    policy, fit, eval_key = _fitted(env, name, key, split, n_windows)
    result = evaluate(env, policy, split, key=eval_key, name=name)
    result["fit"] = fit
    result["seconds"] = time.perf_counter() - t0
    return result


def trace_baseline(
    env: MabimEnv,
    name: str,
    key: jax.Array | None = None,
    splits: Sequence[str] = ("test",),
    n_windows: int = N_WINDOWS,
) -> dict[str, dict[str, Any]]:
    """The fitted policy and episode of :func:`run_baseline` on each split, day by day, from one
    fit: ``{split: trace}`` with the dicts of :func:`envs_jax.mabim.episodes.trace` (components
    and flows per day and warehouse) plus ``policy``."""
    if name == "sS_hindsight" and len(splits) > 1:
        raise ValueError("sS_hindsight is fitted on its evaluation split: trace one split a call")
    policy, _, eval_key = _fitted(env, name, key, splits[0], n_windows)
    return {s: {"policy": name, **trace(env, policy, s, key=eval_key)} for s in splits}


def _fitted(
    env: MabimEnv, name: str, key: jax.Array | None, split: str, n_windows: int
) -> tuple[Policy, dict[str, Any], jax.Array]:
    """``(policy, fit, evaluation key)`` of a named baseline fitted from ``key``."""
    key = jax.random.key(0) if key is None else key
    fit_key, eval_key = jax.random.split(key)
    policy, fit = baseline_policy(env, name, fit_key, split, n_windows)
    return policy, fit, eval_key
