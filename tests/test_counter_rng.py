"""The counter-based generator behind action sampling: uniform, key-dependent, vmap-exact."""

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo import counter_rng, distributions


def test_uniform_is_uniform_and_in_the_open_interval():
    u = np.asarray(counter_rng.uniform(jax.random.PRNGKey(0), (200_000,)))
    assert u.dtype == np.float32 and u.min() > 0.0 and u.max() < 1.0
    counts, _ = np.histogram(u, bins=20, range=(0.0, 1.0))
    expected = u.size / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.0  # 19 degrees of freedom: p < 0.001 above 43.8
    assert abs(u.mean() - 0.5) < 3e-3 and abs(u.var() - 1 / 12) < 2e-3
    lag = np.corrcoef(u[:-1], u[1:])[0, 1]  # neighbouring counters are independent
    assert abs(lag) < 0.01


def test_keys_give_independent_streams_and_vmap_is_exact():
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    draws = jax.vmap(lambda k: counter_rng.uniform(k, (1000,)))(keys)
    alone = [counter_rng.uniform(k, (1000,)) for k in keys]
    for k in range(4):
        assert np.array_equal(np.asarray(draws[k]), np.asarray(alone[k]))
    corr = np.corrcoef(np.asarray(draws))
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.12


def test_sampling_follows_the_masked_policy():
    logits = jnp.log(jnp.asarray([0.5, 0.3, 0.2, 1e-3]))
    mask = jnp.asarray([True, True, True, False])
    keys = jax.random.split(jax.random.PRNGKey(1), 20_000)
    acts = np.asarray(jax.vmap(lambda k: distributions.sample(k, logits, mask))(keys))
    freq = np.bincount(acts, minlength=4) / acts.size
    np.testing.assert_allclose(freq[:3], [0.5, 0.3, 0.2], atol=0.015)
    assert freq[3] == 0.0
