"""Actor-critic initialisation: orthogonal, per-key reproducible, and deadlock-free for K
learners."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo.networks import ActorCritic, init_params, init_stacked_params, param_shapes


def test_orthogonal_kernels_with_ppo_gains():
    net = ActorCritic(n_actions=34, hidden=(64, 32))
    p = init_params(net, jax.random.PRNGKey(0), 88)
    k0 = np.asarray(p["actor_0"]["kernel"])  # [88, 64]: orthonormal columns times sqrt(2)
    np.testing.assert_allclose(k0.T @ k0, 2.0 * np.eye(64), atol=1e-5)
    k1 = np.asarray(p["critic_1"]["kernel"])  # [64, 32]
    np.testing.assert_allclose(k1.T @ k1, 2.0 * np.eye(32), atol=1e-5)
    head = np.asarray(p["actor_head"]["kernel"])  # [32, 34]: orthonormal rows times 0.01
    np.testing.assert_allclose(head @ head.T, 1e-4 * np.eye(32), atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(p["critic_head"]["kernel"]), 1.0, rtol=1e-5)
    assert all(float(jnp.abs(p[name]["bias"]).max()) == 0.0 for name in p)
    shapes = param_shapes(net, 88)
    assert jax.tree_util.tree_map(lambda x: x.shape, shapes) == jax.tree_util.tree_map(
        lambda x: x.shape, p
    )
    logits, value = net.apply({"params": p}, jnp.ones((5, 7, 88)))
    assert logits.shape == (5, 7, 34) and value.shape == (5, 7)


def test_stacked_init_equals_per_key_init_and_keys_differ():
    net = ActorCritic(n_actions=4, hidden=(16,))
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    stacked = init_stacked_params(net, keys, 6)
    for k in range(3):
        single = init_params(net, keys[k], 6)
        jax.tree_util.tree_map(lambda s, x: np.testing.assert_array_equal(s[k], x), stacked, single)
    assert not np.array_equal(stacked["actor_0"]["kernel"][0], stacked["actor_0"]["kernel"][1])


DEADLOCK_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp
    from espark_jax.ippo.networks import ActorCritic, init_stacked_params
    net = ActorCritic(n_actions=34, hidden=(64, 64))
    params = init_stacked_params(net, jax.random.split(jax.random.PRNGKey(0), 16), 88)
    apply = jax.jit(jax.vmap(lambda p, o: net.apply({"params": p}, o)))
    logits, value = apply(params, jnp.ones((16, 3, 88)))
    print("ok", logits.shape, value.shape)
""")


def test_initialising_sixteen_learners_does_not_deadlock():
    # jit(vmap(init)) with flax's orthogonal initialiser hung on 2-core CPUs (batched QR in XLA's
    # thread pool). A fresh process with a hard timeout catches a hang without blocking the suite.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", DEADLOCK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok (16, 3, 34) (16, 3)" in out.stdout
