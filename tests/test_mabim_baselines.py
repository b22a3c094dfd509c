"""MABIM OR baselines: policy arithmetic by hand, the vectorised grid search against a NumPy
reference, evaluation against the environment's own step, and sanity on standard-100."""

from __future__ import annotations

import datetime as dt

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mabim_reference import reference_of

import envs_jax
from envs_jax.mabim import baselines as B
from envs_jax.mabim.config import TOPOLOGIES, MabimConfig
from envs_jax.mabim.data import FIRST_DATE, MabimTables
from envs_jax.mabim.env import MabimEnv


def day(i: int) -> str:
    d = FIRST_DATE + dt.timedelta(days=i)
    return f"{d.year}/{d.month}/{d.day}"


def small_env(
    tables: MabimTables,
    echelons: int = 1,
    capacity: float = 1e6,
    precision: str = "float32",
    horizon: int = 12,
    test_days: int = 10,
    clip: bool = True,
) -> MabimEnv:
    """An environment over hand-made tables: train from row 25, a short test split at the end."""
    wh, prices, costs = TOPOLOGIES[echelons]
    T = len(tables.dates)
    cfg = MabimConfig(
        name="bl-test",
        warehouses=wh,
        price_tables=prices,
        cost_tables=costs,
        capacity=(capacity,) * echelons,
        unit_storage_cost=(0.002,) * echelons,
        horizon=horizon,
        train_dates=(day(25), day(T - test_days - 11)),
        validation_dates=(day(T - test_days - 10), day(T - test_days - 1)),
        test_dates=(day(T - test_days), day(T - 1)),
        precision=precision,
        clip_negative_stock=clip,
    )
    return MabimEnv(cfg, tables)


def random_tables(seed: int, n_days: int = 90, n_skus: int = 3) -> MabimTables:
    rng = np.random.default_rng(seed)
    demand = rng.poisson(rng.uniform(2, 30, n_skus), size=(n_days, n_skus)).astype(float)
    p1 = rng.integers(20, 60, n_skus).astype(float)
    prices = {"store1": np.tile(p1, (n_days, 1))}
    below = prices["store1"]
    for table in ("store2", "store3", "super_vendor"):
        below = np.maximum(below - rng.integers(2, 6, n_skus), 1.0)
        prices[table] = below
    stores = ("store1", "store2", "store3")
    init = {s: rng.integers(0, 80, n_skus).astype(float) for s in stores}
    vlt = {s: rng.integers(1, 4, n_skus).astype(float) for s in stores}
    return MabimTables.from_arrays(demand, prices, init, vlt)


# ------------------------------------------------------------------------------------------
# Policy arithmetic by hand
# ------------------------------------------------------------------------------------------


def test_ss_quantity_by_hand():
    """S = 4, s = 2 days, m = 10: x = inventory / 10.0001.

    inventory 15 -> x = 1.499985 < 2 -> floor((4 - 1.499985) * 10) = floor(25.00015) = 25;
    inventory 25 -> x = 2.49998 >= 2 -> 0; inventory 19 -> x = 1.89998 -> floor(21.0002) = 21;
    m = 0 and nothing on hand -> x = 0 < 2 but (S - 0) * 0 = 0; s = 0 never orders.
    """
    q = B.ss_quantity(
        jnp.float32(4.0),
        jnp.float32(2.0),
        jnp.array([15.0, 25.0, 19.0, 0.0]),
        jnp.array([10.0, 10.0, 10.0, 0.0]),
    )
    np.testing.assert_array_equal(np.asarray(q), [25, 0, 21, 0])
    q0 = B.ss_quantity(
        jnp.float32(4.0), jnp.float32(0.0), jnp.array([0.0, 5.0]), jnp.array([10.0, 10.0])
    )
    np.testing.assert_array_equal(np.asarray(q0), [0, 0])


@pytest.fixture(scope="module")
def ramp():
    """2 echelons, 5 SKUs; tail demand on data row r is r * (1, 2, 3, 4, 5).

    Returns (env, params, state after the test split's reset).
    """
    T, N = 90, 5
    demand = np.arange(T, dtype=float)[:, None] * np.arange(1, N + 1)
    prices = {
        t: np.full((T, N), 20.0 - i)
        for i, t in enumerate(("store1", "store2", "store3", "super_vendor"))
    }
    statics = {s: np.zeros(N) for s in ("store1", "store2", "store3")}
    vlt = {s: np.ones(N) for s in ("store1", "store2", "store3")}
    env = small_env(MabimTables.from_arrays(demand, prices, statics, vlt), echelons=2)
    params = env.default_params("test")
    _, state = jax.jit(env.reset_to)(params.start_lo, params)
    return env, params, state


def test_ss_policy_reads_stock_transit_and_demand_mean_of_each_warehouse(ramp):
    env, params, state = ramp
    hist = np.zeros((2, 5, 21))
    hist[0, :, :] = 21.0  # head: m = 21
    hist[1, :, -1] = 21.0 * np.arange(1, 6)  # tail: m = 1, 2, 3, 4, 5
    state = state.replace(
        in_stock=jnp.array([[10.0, 30, 50, 70, 90], [1.0, 2, 3, 4, 5]]),
        in_transit=jnp.array([[0.0, 0, 0, 0, 0], [0.0, 2, 0, 4, 0]]),
        demand_hist=jnp.asarray(hist, jnp.float32),
    )
    S = jnp.array([6.0, 6.0, 6.0, 6.0, 6.0])
    s = jnp.array([3.0, 3.0, 3.0, 3.0, 1.0])
    q = np.asarray(B.ss_policy(env, S, s)(state, params))
    # head, m = 21, so (S - x) * m = 126 - inventory * 21 / 21.0001:
    #   inventory 10 -> x = 0.476 < 3 -> floor(116.00005) = 116; 30 -> floor(96.00014) = 96;
    #   50 -> floor(76.00024) = 76; 70 -> x = 3.3333 >= 3 -> 0; 90 -> x = 4.29 >= s = 1 -> 0
    # tail, m = 1..5, inventory = stock + transit = 1, 4, 3, 8, 5
    #   -> x = 0.9999, 1.9999, 0.99997, 1.99995, 0.99998
    #   (all below s, SKU4 just below its s = 1) -> floor((6 - x) * m) = 5, 8, 15, 16, 25
    np.testing.assert_array_equal(q[0], [116, 96, 76, 0, 0])
    np.testing.assert_array_equal(q[1], [5, 8, 15, 16, 25])


def test_ss_grid_is_the_169_pairs():
    S, s = B.ss_grid()
    assert len(S) == 169 and len(set(zip(S.tolist(), s.tolist()))) == 169
    assert set(S.tolist()) == set(range(13)) and (s <= S).all() and (s >= 0).all()
    assert ((s * 2) % 1 == 0).all() and np.sum(S == 12) == 25 and np.sum(S == 0) == 1


def test_base_stock_target_and_levels_by_hand():
    levels = jnp.array([[50.7, 10.0, 0.0, 8.0]])
    in_stock = jnp.array([[20.0, 12.0, 0.0, 3.0]])
    in_transit = jnp.array([[5.0, 0.0, 3.0, 5.0]])
    # floor(50.7 - 25) = 25; 10 - 12 < 0 -> 0; 0 - 3 -> 0; 8 - 8 = 0
    np.testing.assert_array_equal(
        np.asarray(B.base_stock_quantity(levels, in_stock, in_transit)), [[25, 0, 0, 0]]
    )
    # mean 10, vlt 1, k 0.5 -> 10 * 2.5 = 25; mean 4, vlt 3, k -1 -> 4 * 3 = 12;
    # mean 2, vlt 0, k -2 -> max(-2, 0)
    lv = B.base_stock_level(
        jnp.array([10.0, 4.0, 2.0]), jnp.array([[1.0, 3.0, 0.0]]), jnp.array([0.5, -1.0, -2.0])
    )
    np.testing.assert_allclose(np.asarray(lv), [[25.0, 12.0, 0.0]])


def test_static_levels_come_from_the_training_mean_and_stay_fixed():
    T = 90
    demand = np.tile([4.0, 10.0], (T, 1))
    demand[:25] = 1000.0  # before the training split: must not count
    demand[-20:] = 0.0  # validation/test (rows 70..89): must not count
    prices = {
        t: np.tile([20.0 - i, 30.0 - i], (T, 1))
        for i, t in enumerate(("store1", "store2", "store3", "super_vendor"))
    }
    statics = {s: np.array([0.0, 0.0]) for s in ("store1", "store2", "store3")}
    vlt = {s: np.array([1.0, 3.0]) for s in ("store1", "store2", "store3")}
    env = small_env(MabimTables.from_arrays(demand, prices, statics, vlt), test_days=10)
    np.testing.assert_allclose(np.asarray(B.train_mean_demand(env)), [4.0, 10.0])
    levels = B.static_levels(env, np.array([1.0, 0.5]))
    np.testing.assert_allclose(np.asarray(levels), [[4.0 * 3, 10.0 * 4.5]])  # mean * (vlt + 1 + k)


def test_rolling_tail_mean_reads_only_the_window_before_the_review_day(ramp):
    env, params, state = ramp
    start = int(params.start_lo)
    # days 0..6 use rows start-21 .. start-1 (mean start - 11);
    # days 7..9 use rows start-14 .. start+6
    for t, mean in ((0, start - 11), (6, start - 11), (7, start - 4), (9, start - 4)):
        got = B.rolling_tail_mean(state.replace(t=jnp.int32(t)), params, period=7, window=21)
        np.testing.assert_allclose(np.asarray(got), mean * np.arange(1, 6), rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Grid search
# ------------------------------------------------------------------------------------------


def test_all_169_pairs_run_in_one_vmapped_call():
    env = envs_jax.make("mabim/tiny")
    params = env.default_params("train")
    traces = []

    def make(theta):
        traces.append(theta[0].shape)  # runs at trace time only
        return B.ss_policy(env, theta[0], theta[1])

    S, s = B.ss_grid()
    starts = B.training_starts(params, jax.random.key(0), 2)
    scores = B.grid_scores(
        env, make, (jnp.asarray(S, jnp.float32), jnp.asarray(s, jnp.float32)), params, starts
    )
    assert scores.shape == (169, env.N)
    assert traces == [
        ()
    ]  # one trace of one candidate: the 169 x 2 episodes are a single vmapped program
    # s = 0 never orders, whatever S: those 13 pairs score alike; s = S = 12 is another episode
    never = np.asarray(scores)[s == 0]
    assert len(never) == 13 and (never == never[0]).all()
    assert not np.array_equal(np.asarray(scores)[-1], never[0])


def _reference_ss_scores(env: MabimEnv, params, S: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-pair, per-SKU episode reward summed over warehouses, from the plain-NumPy simulator."""
    start, D = int(params.start_lo), int(params.horizon)
    out = np.zeros((len(S), env.N))
    for g, (S_g, s_g) in enumerate(zip(S, s)):
        ref = reference_of(params, start)
        for _ in range(D):
            stock, transit = ref.state()
            m = ref.demand_mean()
            x = (stock + transit) / (m + 1e-4)
            q = np.where(x < s_g, np.floor((S_g - x) * m), 0.0)
            reward, _ = ref._step_quantity(q)
            out[g] += reward.sum(axis=0)
    return out


def test_grid_search_picks_the_best_pair_of_an_independent_numpy_simulation():
    """2 echelons, 3 SKUs, tight tail capacity (SKUs interact): the vmapped search scores every
    pair as the reference simulator does, and each SKU gets a pair that is best there."""
    with jax.enable_x64(True):
        env = small_env(
            random_tables(3), echelons=2, capacity=120.0, precision="float64", clip=False
        )
        params = env.default_params("test")
        S_best, s_best, scores = B.fit_ss(env, params, params.start_lo)
        S, s = B.ss_grid()
        ref = _reference_ss_scores(env, params, S, s)
        np.testing.assert_allclose(np.asarray(scores), ref, rtol=1e-10, atol=1e-6)
        chosen = [int(np.flatnonzero((S == a) & (s == b))[0]) for a, b in zip(S_best, s_best)]
        np.testing.assert_allclose(ref[chosen, range(env.N)], ref.max(axis=0), rtol=1e-12)
        assert len(set(ref.max(axis=0).round(6))) == env.N  # a non-trivial case: the SKUs differ


def test_zero_margin_sku_never_orders_and_hindsight_adds_per_sku_maxima():
    """One warehouse, unlimited capacity (SKUs independent). SKU0 sells at its cost: any order
    only costs, so the best pair is (0, 0) (first of the ties). SKU1 has a margin of 20 and steady
    demand 10/day: the chosen pair loses no sales. The hindsight return is the sum of the per-SKU
    best scores."""
    T = 90
    demand = np.tile([10.0, 10.0], (T, 1))
    prices = {
        "store1": np.tile([20.0, 30.0], (T, 1)),
        "store2": np.tile([20.0, 10.0], (T, 1)),
        "store3": np.tile([5.0, 5.0], (T, 1)),
        "super_vendor": np.tile([4.0, 4.0], (T, 1)),
    }
    statics = {s: np.array([0.0, 0.0]) for s in ("store1", "store2", "store3")}
    vlt = {s: np.array([1.0, 1.0]) for s in ("store1", "store2", "store3")}
    env = small_env(MabimTables.from_arrays(demand, prices, statics, vlt), test_days=20)
    params = env.default_params("test")
    S_best, s_best, scores = B.fit_ss(env, params, params.start_lo)
    assert (S_best[0], s_best[0]) == (0.0, 0.0)
    result = B.evaluate(env, B.ss_policy(env, jnp.asarray(S_best), jnp.asarray(s_best)))
    c = result["components"]
    assert c["backlog_cost"] == 0.0  # SKU0's margin is 0 and SKU1 loses no sale ...
    assert c["profit"] == 20.0 * 10 * 20  # ... so it sells its 10 units a day at a margin of 20
    np.testing.assert_allclose(
        result["return"], float(np.asarray(scores).max(axis=0).sum()), rtol=1e-6
    )


# ------------------------------------------------------------------------------------------
# Evaluation and named baselines
# ------------------------------------------------------------------------------------------


def test_evaluate_equals_a_rollout_of_the_environment_step():
    """Constant 1.0 through `evaluate` vs the same multiplier through env.step (continuous mode)."""
    env = envs_jax.make("mabim/tiny-2-echelons", continuous=True)
    params = env.default_params("test")
    result = B.evaluate(env, B.constant_policy(env, 1.0), "test", name="constant")

    def rollout(params):
        _, state = env.reset_to(params.start_lo, params)

        def body(state, _):
            _, state, r, _, info = env.step(None, state, jnp.ones(env.W * env.N), params)
            return state, (r, info["components"])

        _, (r, comps) = jax.lax.scan(body, state, None, length=env.spec.episode_length["test"])
        return r.reshape(-1, env.W, env.N).sum(axis=(0, 2)), {k: v.sum() for k, v in comps.items()}

    per_wh, comps = jax.jit(rollout)(params)
    assert result["split"] == "test" and result["days"] == 60 and result["start_date"] == "2021/9/1"
    assert result["data_source"] == "synthetic(seed=0)"
    np.testing.assert_allclose(
        [result["per_warehouse"][w]["return"] for w in ("store2", "store1")],
        np.asarray(per_wh),
        rtol=1e-5,
    )
    for k, v in comps.items():
        np.testing.assert_allclose(result["components"][k], float(v), rtol=1e-5, atol=1e-3)
    c = result["components"]
    assert result["return"] == pytest.approx(
        c["profit"] - c["excess_cost"] - c["order_cost"] - c["holding_cost"] - c["backlog_cost"]
    )
    assert result["return"] == pytest.approx(
        sum(w["return"] for w in result["per_warehouse"].values())
    )


def test_constant_beats_zero_and_random_on_standard_100_test():
    env = envs_jax.make("mabim/standard-100")
    params = env.default_params("test")
    # multipliers 0 (the zero policy) and 1 in one vmapped call
    zero, const = np.asarray(
        B.grid_scores(
            env, lambda c: B.constant_policy(env, c), jnp.array([0.0, 1.0]), params, params.start_lo
        )
    ).sum(axis=1)
    rand = B.evaluate(env, B.random_policy(env, jax.random.key(0)), name="random")
    assert const > zero and const > rand["return"]
    assert (
        rand["components"]["excess_cost"] > 0
    )  # random multipliers up to 12 overflow the warehouse


def test_fitted_baselines_on_tiny_fit_per_sku_from_the_key():
    env = envs_jax.make("mabim/tiny")
    train = env.default_params("train")
    results = {
        name: B.run_baseline(env, name, key=jax.random.key(1), n_windows=2)
        for name in ("base_stock_dynamic", "sS_static")
    }
    for name, r in results.items():
        assert (
            np.isfinite(r["return"])
            and r["policy"] == name
            and r["split"] == "test"
            and r["seconds"] > 0
        )
    assert (
        len(results["sS_static"]["fit"]["S"]) == env.N
        and results["sS_static"]["fit"]["search_episodes"] == 338
    )
    _, static_fit = B.baseline_policy(env, "base_stock_static", key=jax.random.key(1), n_windows=2)
    for k in (static_fit["safety_days"], results["base_stock_dynamic"]["fit"]["safety_days"]):
        assert len(k) == env.N and set(k) <= set(B.SAFETY_DAYS)
    # the training windows come from the key alone
    a, b = (np.asarray(B.training_starts(train, jax.random.key(1), 8)) for _ in range(2))
    assert (a == b).all() and len(set(a.tolist())) > 1
    assert ((a >= int(train.start_lo)) & (a < int(train.start_lo) + int(train.n_starts))).all()


def test_bad_inputs_are_one_line_errors():
    env = envs_jax.make("mabim/tiny")
    with pytest.raises(
        ValueError, match=r"unknown MABIM baseline 'sS'; valid: zero, constant"
    ) as err:
        B.run_baseline(env, "sS")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"pass key=jax.random.key"):
        B.evaluate(env, B.zero_policy(env), "train")
    with pytest.raises(ValueError, match=r"n_windows must be at least 1"):
        B.training_starts(env.default_params("train"), jax.random.key(0), 0)
    with pytest.raises(
        ValueError, match=r"must return order quantities of shape \(1, 5\), got \(5,\)"
    ):
        B.evaluate(env, lambda state, params: jnp.zeros(5))
