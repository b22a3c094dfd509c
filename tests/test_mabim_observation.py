"""MABIM observation and mask context: the optimised code against a plain NumPy transcription of
the documented features, sliding window sums against fresh sums, and the clip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mabim_env import make_env, random_tables

from envs_jax.mabim import window
from envs_jax.mabim.env import MabimEnv, MabimState

Z_95 = 1.6448536


def reference_observation(env: MabimEnv, state, params) -> np.ndarray:
    """The 87 + W features of ``features.observation``'s docstring, written out in float64 NumPy."""
    W, N = env.W, env.N
    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    I, T, p, c = f(state.in_stock), f(state.in_transit), f(state.price), f(state.cost)
    dem, sale, rep = f(state.demand_hist), f(state.sale_hist), f(state.replenish_hist)
    vlt, cap = f(params.vlt), f(params.capacity)[:, None]
    hold, uoc = f(params.holding_cost), f(params.unit_order_cost)
    dm, sd = dem.mean(-1), dem.std(-1)
    sm, ss = sale.mean(-1), sale.std(-1)
    z = dm + 1.0
    rop = vlt * sm + np.sqrt(vlt) * ss * Z_95
    pp = np.where(p > 0, p, 1.0)
    IT, cover, margin = I + T, dm * (vlt + 1.0), p - c
    sI, sT = I.sum(1, keepdims=True), T.sum(1, keepdims=True)
    ones = np.ones_like(I)
    local = [
        (I <= 0) * 1.0,
        I / z,
        T / z,
        IT / z,
        rop / z,
        (IT <= rop) * 1.0,
        sd / z,
        dm / cap,
        c / pp,
        margin / pp,
        hold / pp,
        uoc / pp,
        vlt / 10,
        cover / z,
        (IT - cover) / z,
        ones,
    ]
    glob = [
        ones * sI / cap,
        (I * margin).sum(1, keepdims=True) / (sI + 1) / pp,
        ones * (cap - sI) / cap,
        ones * sT / cap,
        (T * margin).sum() / (sT + 1) / pp,
        ones * (sI + sT) / cap,
        (IT * margin).sum(1, keepdims=True) / (sI + sT + 1) / pp,
    ]
    scalars = np.clip(np.stack(local + glob, -1), -30, 30)
    windows = np.minimum(
        np.concatenate([dem / z[..., None], rep / z[..., None], rep / cap[..., None]], -1), 30
    )
    onehot = np.broadcast_to(np.eye(W)[:, None, :], (W, N, W))
    days_left = float(params.horizon) - float(state.t)
    time = np.full((W, N, 1), min(days_left, 30.0) / 30.0)
    return np.concatenate([scalars, windows, onehot, time], -1).reshape(W * N, -1)


def random_state(env: MabimEnv, params, seed: int, t: int = 5):
    """A state with arbitrary (but valid) contents: integer histories, prices and stock."""
    rng = np.random.default_rng(seed)
    W, N, L, V = env.W, env.N, env.L, env.V
    ints = lambda hi, shape: jnp.asarray(rng.integers(0, hi, shape), env.dtype)  # noqa: E731
    price = ints(60, (W, N)) + 1.0
    return MabimState(
        t=jnp.int32(t),
        start=params.start_lo,
        in_stock=ints(300, (W, N)),
        in_transit=ints(200, (W, N)),
        pipeline=ints(50, (W, V, N)),
        demand_hist=ints(80, (W, N, L)),
        sale_hist=ints(60, (W, N, L)),
        replenish_hist=ints(400, (W, N, L)),
        excess=jnp.zeros((W, N), env.dtype),
        price=price,
        cost=jnp.maximum(price - ints(20, (W, N)), 0.0),
    )


@pytest.mark.parametrize("echelons", [1, 3])
def test_observation_matches_the_documented_features(echelons):
    env = make_env(random_tables(20 + echelons, n_skus=6), echelons=echelons, capacity=500.0)
    params = env.default_params("train")
    observe = jax.jit(env.observe)
    for seed in range(3):
        state = random_state(env, params, seed, t=5 + 40 * seed)
        obs = np.asarray(observe(state, params))
        assert obs.shape == (env.spec.n_agents, env.spec.obs_dim)
        np.testing.assert_allclose(
            obs, reference_observation(env, state, params), rtol=2e-5, atol=2e-5
        )


def test_clips_bind_where_documented():
    """Big ratios are clipped to +-30 (scalars) and 30 (order windows); a small capacity makes
    them bind."""
    env = make_env(random_tables(31, n_skus=5), capacity=3.0)
    params = env.default_params("train")
    state = random_state(env, params, 1)
    state = state.replace(
        demand_hist=jnp.zeros_like(state.demand_hist)
    )  # z = 1: orders / z up to 399
    obs = np.asarray(jax.jit(env.observe)(state, params))
    ref = reference_observation(env, state, params)
    assert (ref == 30.0).sum() > 20 and obs.max() == 30.0 and obs.min() >= -30.0
    np.testing.assert_allclose(obs, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("echelons", [1, 2])
def test_step_observation_equals_a_fresh_observation(echelons):
    """The step slides the window sums; observing the next state from scratch gives the same
    features."""
    env = make_env(random_tables(40 + echelons, n_skus=5), echelons=echelons, capacity=300.0)
    params = env.default_params("train")
    step, observe = jax.jit(env.step), jax.jit(env.observe)
    _, state = env.reset(jax.random.key(0), params)
    rng = np.random.default_rng(0)
    for _ in range(12):
        a = jnp.asarray(rng.integers(0, env.A, env.W * env.N), jnp.int32)
        obs, state, *_ = step(None, state, a, params)
        np.testing.assert_allclose(
            np.asarray(obs), np.asarray(observe(state, params)), rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(obs), reference_observation(env, state, params), rtol=2e-5, atol=2e-5
        )


def test_window_sums_slide_exactly():
    env = make_env(random_tables(50, n_skus=4), echelons=2, capacity=300.0)
    params = env.default_params("train")
    state = random_state(env, params, 3)
    demand = jnp.asarray(np.arange(8.0).reshape(2, 4) * 7)
    sale = jnp.minimum(demand, 9.0)
    slid = window.advance_window_sums(window.window_sums(state), state, demand, sale)
    pushed = state.replace(
        demand_hist=jnp.concatenate([state.demand_hist[..., 1:], demand[..., None]], -1),
        sale_hist=jnp.concatenate([state.sale_hist[..., 1:], sale[..., None]], -1),
    )
    fresh = window.window_sums(pushed)
    for a, b, name in zip(slid, fresh, window.WindowSums._fields):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    d = np.asarray(pushed.demand_hist)
    np.testing.assert_array_equal(np.asarray(fresh.demand_sq), (d * d).sum(-1))


def test_mask_context_statistics():
    env = make_env(random_tables(60, n_skus=5), echelons=3, capacity=500.0)
    params = env.default_params("train")
    state = random_state(env, params, 4)
    ctx = env.mask_context(state, params)
    dem, sale = np.asarray(state.demand_hist), np.asarray(state.sale_hist)
    np.testing.assert_allclose(ctx.demand_mean, dem.mean(-1), rtol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(ctx.demand_mean), np.asarray(env.demand_mean(state, params))
    )
    np.testing.assert_allclose(ctx.demand_std, dem.std(-1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ctx.sale_mean, sale.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(ctx.total_stock, np.asarray(state.in_stock).sum(1))
