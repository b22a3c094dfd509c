"""MABIM dynamics: hand-computed cases, the original's semantics in float64, invariants,
jit/vmap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mabim_reference import reference_of

from envs_jax.mabim.config import MULTIPLIERS_34, TOPOLOGIES, MabimConfig
from envs_jax.mabim.data import FIRST_DATE, MabimTables
from envs_jax.mabim.env import ActionError, MabimEnv, MabimState


def random_tables(seed: int, n_days: int = 80, n_skus: int = 4, max_vlt: int = 4) -> MabimTables:
    rng = np.random.default_rng(seed)
    demand = rng.poisson(rng.uniform(1, 40, n_skus), size=(n_days, n_skus)).astype(float)
    p1 = rng.integers(20, 60, n_skus).astype(float)
    prices, below = {}, p1
    for table in ("store1", "store2", "store3", "super_vendor"):
        noise = rng.integers(0, 3, (n_days, n_skus))
        prices[table] = (
            np.maximum(below - noise, 1.0) if table != "store1" else np.tile(p1, (n_days, 1))
        )
        below = prices[table] - 2
    stores = ("store1", "store2", "store3")
    init = {s: rng.integers(0, 120, n_skus).astype(float) for s in stores}
    vlt = {s: rng.integers(1, max_vlt + 1, n_skus).astype(float) for s in stores}
    return MabimTables.from_arrays(demand, prices, init, vlt)


def day(i: int) -> str:
    d = FIRST_DATE + dt.timedelta(days=i)
    return f"{d.year}/{d.month}/{d.day}"


def make_env(
    tables: MabimTables,
    echelons: int = 1,
    capacity: float = 1e6,
    horizon: int = 20,
    precision: str = "float32",
    clip: bool = True,
    continuous: bool = False,
) -> MabimEnv:
    wh, prices, costs = TOPOLOGIES[echelons]
    T = len(tables.dates)
    cfg = MabimConfig(
        name="test",
        warehouses=wh,
        price_tables=prices,
        cost_tables=costs,
        capacity=(capacity,) * echelons,
        unit_storage_cost=(0.002,) * echelons,
        horizon=horizon,
        train_dates=(day(25), day(T - 21)),
        validation_dates=(day(T - 20), day(T - 11)),
        test_dates=(day(T - 10), day(T - 1)),
        precision=precision,
        clip_negative_stock=clip,
        continuous=continuous,
    )
    return MabimEnv(cfg, tables)


# ------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------


def test_worked_example_two_echelons_three_skus():
    """The reference's section 2.4: store2 (head, capacity 1000) -> store1 (tail, capacity 150)."""
    with jax.enable_x64(True):
        tabs = random_tables(0, n_skus=3)
        tabs.vlt["store1"][:] = [1, 1, 3]
        env = make_env(tabs, echelons=2, capacity=1000.0, precision="float64", continuous=True)
        env = MabimEnv(dataclasses.replace(env.config, capacity=(1000.0, 150.0)), tabs)
        params = env.default_params("train")
        W, L, N = 2, 21, 3
        demand_hist = np.zeros((W, N, L))
        # store1's 21-day demand: means (2*20+9)/21 = 2.333.., (84*20+77)/21 = 83.667, 35.0
        demand_hist[1] = np.concatenate([np.full((20, 3), [2, 84, 35]), [[9, 77, 35]]]).T
        pipeline = np.zeros((W, env.V, N))
        pipeline[1, 0] = [5, 168, 27]  # store1 arrivals today
        state = MabimState(
            t=jnp.int32(2),
            start=jnp.int32(30),
            in_stock=jnp.array([[12.0, 171.0, 72.0], [4.0, 50.0, 30.0]]),
            in_transit=jnp.array([[0.0, 0.0, 0.0], [5.0, 168.0, 27.0]]),
            pipeline=jnp.asarray(pipeline),
            demand_hist=jnp.asarray(demand_hist),
            sale_hist=jnp.zeros((W, N, L)),
            replenish_hist=jnp.zeros((W, N, L)),
            excess=jnp.zeros((W, N)),
            price=jnp.zeros((W, N)),
            cost=jnp.zeros((W, N)),
        )
        consumer = jnp.array([10.0, 60.0, 9.0])
        params = params.replace(demand=params.demand.at[32].set(consumer))
        actions = jnp.array([[0.0, 0.0, 0.0], [8.0, 8.0, 8.0]])
        _, nxt, _, _, info = env.step(None, state, actions, params)
        f = info["flows"]
        np.testing.assert_array_equal(f["replenish"][1], [18, 669, 280])
        np.testing.assert_array_equal(f["demand"][0], [18, 669, 280])  # store2's demand today
        np.testing.assert_array_equal(f["sale"][0], [12, 171, 72])
        np.testing.assert_array_equal(f["sale"][1], [4, 50, 9])  # stock after sales [0, 0, 21]
        np.testing.assert_array_equal(f["accepted"][1], [3, 108, 17])  # floor([5,168,27] * 129/200)
        np.testing.assert_array_equal(f["excess"][1], [2, 60, 10])
        np.testing.assert_array_equal(nxt.in_stock[1], [3, 108, 38])
        # store2's shipments arrive at store1 after vlt [1, 1, 3]
        # -> pipeline slots 0, 0, 2 after advancing
        np.testing.assert_array_equal(nxt.pipeline[1, 0], [12, 171, 0])
        np.testing.assert_array_equal(nxt.pipeline[1, 2], [0, 0, 72])
        np.testing.assert_array_equal(nxt.in_transit[1], [12, 171, 72])


def test_hand_computed_single_store_three_days():
    """One warehouse, two SKUs, capacity 100, lead times 1 and 2, three decisions by hand.

    Prices p = [10, 20], costs c = [8, 15] (margins 2 and 5); holding 0.003 per unit per day.
    Demand mean m = [10, 4] throughout (history of constant 10 and 4; consumer demand 10 and 4).
    Start: stock [5, 50], nothing in transit.

    Day 0, multipliers [2.0, 0.0] -> q = [20, 0]. SKU0 arrives day 1 (vlt 1).
      sale = min([10, 4], [5, 50]) = [5, 4]; stock [0, 46]; no arrivals.
      profit = [10, 20]; backlog = [2*5*0.1, 0] = [1, 0]; order cost [10, 0];
      holding = 0.003*[0, 46] = [0, 0.138]; reward = [-1, 19.862].
    Day 1, multipliers [0.0, 12.0] -> q = [0, 48]. SKU1 arrives day 3.
      sale = [0, 4]; stock [0, 42]; arrivals [20, 0], free = 100 - 42 = 58 -> ratio 1, accept 20.
      stock [20, 42]; profit [0, 20]; backlog [2*10*0.1, 0] = [2, 0]; order [0, 10];
      holding [0.06, 0.126]; reward [-2.06, 9.874].
    Day 2, multipliers [0, 0]: sale [10, 4]; stock [10, 38]; nothing arrives (SKU1's 48 is due
      day 3); profit [20, 20]; holding [0.03, 0.114]; reward [19.97, 19.886]; in transit [0, 48].
    """
    with jax.enable_x64(True):
        T = 60
        demand = np.tile([10.0, 4.0], (T, 1))
        prices = {"store1": np.tile([10.0, 20.0], (T, 1)), "store2": np.tile([8.0, 15.0], (T, 1))}
        tabs = MabimTables.from_arrays(
            demand, prices, {"store1": np.array([5.0, 50.0])}, {"store1": np.array([1.0, 2.0])}
        )
        wh = ("store1",)
        cfg = MabimConfig(
            name="hand",
            warehouses=wh,
            price_tables=("store1",),
            cost_tables=("store2",),
            capacity=(100.0,),
            horizon=10,
            train_dates=(day(25), day(40)),
            validation_dates=(day(41), day(50)),
            test_dates=(day(51), day(59)),
            precision="float64",
            continuous=True,
        )
        env = MabimEnv(
            cfg,
            MabimTables(
                tabs.dates,
                tabs.sku_ids,
                tabs.demand,
                tabs.prices,
                {"store1": np.array([5.0, 50.0])},
                {"store1": np.array([1.0, 2.0])},
                "hand",
            ),
        )
        params = env.default_params("train")
        L = 21
        state = MabimState(
            t=jnp.int32(0),
            start=jnp.int32(30),
            in_stock=jnp.array([[5.0, 50.0]]),
            in_transit=jnp.zeros((1, 2)),
            pipeline=jnp.zeros((1, env.V, 2)),
            demand_hist=jnp.asarray(np.tile([[10.0], [4.0]], (1, 1, L))),
            sale_hist=jnp.zeros((1, 2, L)),
            replenish_hist=jnp.zeros((1, 2, L)),
            excess=jnp.zeros((1, 2)),
            price=jnp.zeros((1, 2)),
            cost=jnp.zeros((1, 2)),
        )
        expected = [
            ([2.0, 0.0], [-1.0, 19.862]),
            ([0.0, 12.0], [-2.06, 9.874]),
            ([0.0, 0.0], [19.97, 19.886]),
        ]
        for mult, reward in expected:
            _, state, r, _, _ = env.step(None, state, jnp.array(mult), params)
            np.testing.assert_allclose(np.asarray(r), reward, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(state.in_stock[0], [10, 38])
        np.testing.assert_array_equal(state.in_transit[0], [0, 48])


# ------------------------------------------------------------------------------------------
# Exact agreement with the original's semantics (float64)
# ------------------------------------------------------------------------------------------


def run_both(tables, echelons, capacity, seed, split="train", clip=False, start_offset=0):
    env = make_env(tables, echelons=echelons, capacity=capacity, precision="float64", clip=clip)
    params = env.default_params(split)
    start = int(params.start_lo) + start_offset
    D = int(params.horizon)
    W, N = env.W, env.N
    ref = reference_of(params, start, action_values=MULTIPLIERS_34)
    _, state = jax.jit(env.reset_to)(jnp.int32(start), params)
    step = jax.jit(env.step)
    rng = np.random.default_rng(seed)
    for _ in range(D):
        a = rng.integers(0, 34, (W, N))
        r_ref, c_ref, done_ref = ref.step(a)
        _, state, r, done, info = step(None, state, jnp.asarray(a.reshape(-1), jnp.int32), params)
        np.testing.assert_array_equal(np.asarray(r).reshape(W, N), r_ref)
        for k, v in c_ref.items():
            np.testing.assert_array_equal(
                np.asarray(info["components"][k]).reshape(W, N), v, err_msg=k
            )
        stock_ref, transit_ref = ref.state()
        np.testing.assert_array_equal(np.asarray(state.in_stock), stock_ref)
        np.testing.assert_array_equal(np.asarray(state.in_transit), transit_ref)
        assert bool(done) == done_ref
    return env


@pytest.mark.parametrize("echelons", [1, 2, 3])
@pytest.mark.parametrize("capacity", [1e6, 400.0])
def test_agrees_with_original_semantics_in_float64(echelons, capacity):
    with jax.enable_x64(True):
        tabs = random_tables(10 + echelons, n_skus=5)
        run_both(tabs, echelons, capacity, seed=echelons)


def test_agrees_on_test_split_edges_float64():
    """The whole test split: last-day rules (no upstream demand, dropped arrivals) included."""
    with jax.enable_x64(True):
        run_both(random_tables(3, n_skus=4), 3, 300.0, seed=7, split="test")


def test_overfull_warehouse_matches_original_when_unclipped():
    """Initial stock above capacity: the original's negative acceptance ratio, bit for bit."""
    with jax.enable_x64(True):
        tabs = random_tables(5, n_skus=4)
        for s in tabs.init_stock:
            tabs.init_stock[s][:] = 200.0
        run_both(tabs, 1, 150.0, seed=1, clip=False)


def test_clipping_keeps_stock_non_negative_when_overfull():
    tabs = random_tables(6, n_skus=4)
    tabs.init_stock["store1"][:] = [0.0, 300.0, 0.0, 0.0]
    env = make_env(tabs, capacity=100.0, clip=True)
    params = env.default_params("train")
    _, state = env.reset_to(params.start_lo, params)
    rng = np.random.default_rng(0)
    for _ in range(15):
        _, state, _, _, info = env.step(
            None, state, jnp.asarray(rng.integers(20, 34, 4), jnp.int32), params
        )
        assert float(state.in_stock.min()) >= 0.0
        f = info["flows"]
        np.testing.assert_allclose(f["accepted"] + f["excess"], f["arrived"])


# ------------------------------------------------------------------------------------------
# Invariants, property tests
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _property_env(echelons: int, capacity: float):
    env = make_env(
        random_tables(echelons, n_skus=3),
        echelons=echelons,
        capacity=capacity,
        precision="float64",
        horizon=16,
    )
    return env, env.default_params("train"), jax.jit(env.reset), jax.jit(env.step)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    echelons=st.sampled_from([1, 2, 3]),
    capacity=st.sampled_from([150.0, 1e5]),
)
def test_invariants_under_random_actions(seed, echelons, capacity):
    with jax.enable_x64(True):
        env, params, reset, step = _property_env(echelons, capacity)
        _, state = reset(jax.random.key(seed), params)
        rng = np.random.default_rng(seed)
        D = int(params.horizon)
        for _ in range(D):
            prev = state
            a = jnp.asarray(rng.integers(0, 34, env.W * env.N), jnp.int32)
            _, state, r, done, info = step(None, state, a, params)
            f = {k: np.asarray(v) for k, v in info["flows"].items()}
            assert (np.asarray(state.in_stock) >= 0).all()
            np.testing.assert_array_equal(f["accepted"] + f["excess"], f["arrived"])
            assert (f["sale"] <= f["demand"]).all() and (f["sale"] >= 0).all()
            # in-transit bookkeeping: sent - arrived
            sent = np.concatenate([f["replenish"][:1], f["sale"][:-1]], axis=0)
            np.testing.assert_array_equal(
                np.asarray(state.in_transit), np.asarray(prev.in_transit) + sent - f["arrived"]
            )
            # before the end-of-episode drops, in transit == what the pipeline holds
            if int(prev.t) + env.V < D:
                np.testing.assert_array_equal(
                    np.asarray(state.in_transit), np.asarray(state.pipeline).sum(axis=1)
                )
            # stock bookkeeping
            np.testing.assert_array_equal(
                np.asarray(state.in_stock), np.asarray(prev.in_stock) - f["sale"] + f["accepted"]
            )
            comps = info["components"]
            total = (
                comps["profit"]
                - comps["excess_cost"]
                - comps["order_cost"]
                - comps["holding_cost"]
                - comps["backlog_cost"]
            )
            np.testing.assert_allclose(np.asarray(total), np.asarray(r), rtol=0, atol=1e-9)
        assert bool(done)


def test_episode_lengths_and_done_flags():
    tabs = random_tables(1)
    env = make_env(tabs, horizon=12)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    for split, D in (("train", 12), ("validation", 10), ("test", 10)):
        params = env.default_params(split)
        assert env.spec.episode_length[split] == D
        _, s = reset(jax.random.key(0), params)
        dones = []
        for _ in range(D):
            _, s, _, d, _ = step(None, s, jnp.zeros(env.N, jnp.int32), params)
            dones.append(bool(d))
        assert dones == [False] * (D - 1) + [True]


def test_train_window_is_drawn_from_the_key():
    tabs = random_tables(2)
    env = make_env(tabs, horizon=12)
    params = env.default_params("train")
    starts = np.asarray(
        jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(
            jax.random.split(jax.random.key(0), 12), params
        )[1].start
    )
    lo, n = int(params.start_lo), int(params.n_starts)
    assert len(set(starts.tolist())) > 3 and ((lo <= starts) & (starts < lo + n)).all()
    reset = jax.jit(env.reset)
    assert int(reset(jax.random.key(3), params)[1].start) == int(
        reset(jax.random.key(3), params)[1].start
    )
    test = env.default_params("test")
    assert len({int(reset(jax.random.key(k), test)[1].start) for k in range(4)}) == 1


def test_vmap_matches_unbatched_and_is_deterministic():
    tabs = random_tables(4)
    env = make_env(tabs, echelons=2, capacity=300.0)
    params = env.default_params("train")
    keys = jax.random.split(jax.random.key(0), 3)
    obs_b, st_b = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    actions = jax.random.randint(jax.random.key(1), (3, env.W * env.N), 0, 34)
    vstep = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    out_b = vstep(None, st_b, actions, params)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    for i in range(3):
        obs_i, st_i = reset(keys[i], params)
        np.testing.assert_allclose(obs_b[i], obs_i, rtol=1e-6, atol=1e-6)
        out_i = step(None, st_i, actions[i], params)
        np.testing.assert_allclose(out_b[2][i], out_i[2], rtol=1e-6, atol=1e-3)
        np.testing.assert_array_equal(out_b[1].in_stock[i], out_i[1].in_stock)
    again = vstep(None, st_b, actions, params)
    np.testing.assert_array_equal(np.asarray(again[2]), np.asarray(out_b[2]))


def test_float64_floors_are_exact():
    """q = floor(multiplier * (sum of 21 integers) / 21) in float64, for many histories."""
    with jax.enable_x64(True):
        tabs = random_tables(8, n_skus=6)
        env = make_env(tabs, precision="float64")
        params = env.default_params("train")
        _, state = env.reset_to(params.start_lo, params)
        rng = np.random.default_rng(0)
        qfn = jax.jit(env.order_quantity)
        for _ in range(60):
            hist = rng.integers(0, 500, (1, 6, 21)).astype(np.float64)
            a = rng.integers(0, 34, 6)
            q = np.asarray(
                qfn(state.replace(demand_hist=jnp.asarray(hist)), jnp.asarray(a, jnp.int32), params)
            )
            expected = np.floor(np.asarray(MULTIPLIERS_34)[a] * np.average(hist, -1))
            np.testing.assert_array_equal(q, expected)
        assert env.dtype == jnp.float64


def test_float64_floors_are_exact_under_vmap_with_shared_params():
    """Batched environments sharing one params: the demand mean must stay a true division."""
    with jax.enable_x64(True):
        tabs = random_tables(8, n_skus=6)
        env = make_env(tabs, echelons=2, precision="float64")
        params = env.default_params("train")
        _, state = env.reset_to(params.start_lo, params)
        rng = np.random.default_rng(1)
        B = 64
        hist = rng.integers(0, 500, (B, 2, 6, 21)).astype(np.float64)
        actions = rng.integers(0, 34, (B, 12))
        states = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (B,) + x.shape), state)
        states = states.replace(demand_hist=jnp.asarray(hist))
        q = np.asarray(
            jax.jit(jax.vmap(env.order_quantity, in_axes=(0, 0, None)))(
                states, jnp.asarray(actions, jnp.int32), params
            )
        )
        expected = np.floor(
            np.asarray(MULTIPLIERS_34)[actions].reshape(B, 2, 6) * np.average(hist, -1)
        )
        np.testing.assert_array_equal(q, expected)
        m = np.asarray(jax.jit(jax.vmap(env.demand_mean, in_axes=(0, None)))(states, params))
        np.testing.assert_array_equal(m, np.average(hist, -1))


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_mask_context_demand_mean_is_the_one_the_orders_use(precision):
    """ctx.demand_mean equals env.demand_mean and the true division bitwise, under jit and vmap
    with shared params, so a mask's floor(a * demand_mean) is the order the environment places."""
    with jax.enable_x64(precision == "float64"):
        env = make_env(random_tables(11, n_skus=6), 2, capacity=400.0, precision=precision)
        params = env.default_params("train")
        values = np.asarray(params.action_values)
        B, W, N = 16, env.W, env.N
        keys = jax.random.split(jax.random.key(0), B)
        _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
        step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        context = jax.jit(jax.vmap(env.mask_context, in_axes=(0, None)))
        mean = jax.jit(jax.vmap(env.demand_mean, in_axes=(0, None)))

        def mask_order_and_env_order(state, a):  # one program, as in a rollout
            ctx = env.mask_context(state, params)
            mask_order = jnp.floor(params.action_values[a].reshape(W, N) * ctx.demand_mean)
            return mask_order, env.step(None, state, a, params)[4]["flows"]["replenish"]

        together = jax.jit(jax.vmap(mask_order_and_env_order))
        rng = np.random.default_rng(0)
        for _ in range(6):
            actions = rng.integers(0, env.A, (B, W * N)).astype(np.int32)
            dm = np.asarray(context(states, params).demand_mean)
            np.testing.assert_array_equal(dm, np.asarray(mean(states, params)))
            hist = np.asarray(states.demand_hist)  # integers: numpy's sum is exact
            np.testing.assert_array_equal(dm, hist.sum(-1) / hist.dtype.type(env.L))
            mask_order, env_order = (np.asarray(x) for x in together(states, actions))
            np.testing.assert_array_equal(mask_order, env_order)
            _, states, _, _, info = step(keys, states, jnp.asarray(actions), params)
            replenish = np.asarray(info["flows"]["replenish"])
            np.testing.assert_array_equal(replenish, env_order)
            np.testing.assert_array_equal(
                replenish, np.floor(values[actions].reshape(B, W, N) * dm)
            )
        one = jax.tree_util.tree_map(lambda x: x[0], states)
        np.testing.assert_array_equal(
            np.asarray(jax.jit(env.mask_context)(one, params).demand_mean),
            np.asarray(jax.jit(env.demand_mean)(one, params)),
        )
        assert dm.dtype == env.dtype and (dm > 0).any()


def test_observation_and_context_shapes():
    tabs = random_tables(9)
    env = make_env(tabs, echelons=3, capacity=500.0)
    params = env.default_params("train")
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (env.spec.n_agents, env.spec.obs_dim)
    assert bool(jnp.isfinite(obs).all())
    ctx = env.mask_context(state, params)
    for f in env.spec.context_fields:
        assert tuple(getattr(ctx, f.name).shape) == env.spec.field_shape(f), f.name
    np.testing.assert_allclose(
        ctx.demand_mean, np.asarray(state.demand_hist).mean(axis=-1), rtol=1e-6
    )
    # warehouse one-hot sits before the time feature
    onehot = np.asarray(obs)[:, -4:-1]  # warehouse one-hot, then the time feature
    np.testing.assert_array_equal(onehot.argmax(1), np.repeat(np.arange(3), env.N))


# ------------------------------------------------------------------------------------------
# Bad actions
# ------------------------------------------------------------------------------------------


def test_bad_actions_are_clear_errors():
    env = make_env(random_tables(1))
    params = env.default_params("train")
    _, s = env.reset(jax.random.key(0), params)
    with pytest.raises(ActionError, match=r"lie in \[0, 33\]"):
        env.step(None, s, jnp.full(env.N, 34, jnp.int32), params)
    with pytest.raises(ActionError, match="lie in"):
        env.step(None, s, jnp.full(env.N, -1, jnp.int32), params)
    with pytest.raises(ActionError, match="shape"):
        env.step(None, s, jnp.zeros(env.N + 1, jnp.int32), params)
    with pytest.raises(ActionError, match="continuous=True"):
        env.step(None, s, jnp.zeros(env.N, jnp.float32), params)
    cont = make_env(random_tables(1), continuous=True)
    with pytest.raises(ActionError, match=">= 0"):
        cont.step(None, s, jnp.full(env.N, -1.0), params)
