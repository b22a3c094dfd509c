"""The masked categorical (the paper's pi_E)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo import distributions as dist
from espark_jax.masks.safe import fallback_empty_rows

LOGITS = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
MASK = jnp.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0]], bool)


def test_probabilities_renormalise_over_allowed_actions():
    p = np.asarray(dist.probs(LOGITS, MASK))
    # row 0: softmax over logits 1 and 3 only
    e1, e3 = math.exp(1.0), math.exp(3.0)
    np.testing.assert_allclose(p[0], [e1 / (e1 + e3), 0.0, e3 / (e1 + e3), 0.0], rtol=1e-6)
    # row 2: equal logits, two allowed -> 1/2 each, disallowed exactly 0
    np.testing.assert_array_equal(p[2], [0.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)


def test_all_zero_row_falls_back_to_unmasked_policy():
    p = np.asarray(dist.probs(LOGITS, MASK))
    np.testing.assert_allclose(p[1], np.asarray(jax.nn.softmax(LOGITS[1])), rtol=1e-6)
    assert bool(fallback_empty_rows(MASK)[1].all())
    np.testing.assert_allclose(
        dist.entropy(LOGITS[1:2], MASK[1:2]), dist.entropy(LOGITS[1:2]), rtol=1e-6
    )


def test_entropy_log_prob_and_kl_hand_cases():
    # two equally likely allowed actions: entropy ln 2, log-prob -ln 2
    np.testing.assert_allclose(dist.entropy(LOGITS[2], MASK[2]), math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(
        dist.log_prob(LOGITS[2], MASK[2], jnp.array(1)), -math.log(2.0), rtol=1e-6
    )
    # KL of a policy with itself is 0; KL([.5,.5] || [e1, e3] renormalised) by hand
    assert float(jnp.max(jnp.abs(dist.kl(LOGITS, LOGITS, MASK)))) < 1e-6
    p = jnp.array([0.0, 0.0, 0.0, 0.0])
    q = jnp.array([1.0, 0.0, 3.0, 0.0])
    m = jnp.array([1, 0, 1, 0], bool)
    q1, q3 = math.exp(1) / (math.exp(1) + math.exp(3)), math.exp(3) / (math.exp(1) + math.exp(3))
    expected = 0.5 * math.log(0.5 / q1) + 0.5 * math.log(0.5 / q3)
    np.testing.assert_allclose(dist.kl(p, q, m), expected, rtol=1e-5)


def test_no_nan_for_extreme_logits_and_masks_including_gradients():
    logits = jnp.array([[1e4, -1e4, 0.0, 50.0], [-1e4, -1e4, -1e4, -1e4], [0.0, 0.0, 0.0, 0.0]])
    masks = jnp.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    for fn in (
        lambda l: dist.entropy(l, masks),
        lambda l: dist.log_prob(l, masks, jnp.array([1, 2, 0])),
        lambda l: dist.kl(l, l * 0.5, masks),
    ):
        val = fn(logits)
        grad = jax.grad(lambda l: jnp.sum(fn(l)))(logits)
        assert bool(jnp.all(jnp.isfinite(val))) and bool(jnp.all(jnp.isfinite(grad)))
    assert dist.MASKED_LOGIT > -jnp.inf


def test_sampled_and_greedy_actions_are_always_allowed():
    # 300 random draws of 16 agents x 34 actions; mask densities from 0 (all-zero rows) to 0.5
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0.0, 5.0, size=(300, 16, 34)), jnp.float32)
    density = rng.uniform(0.0, 0.5, size=(300, 1, 1)) * (rng.random((300, 1, 1)) > 0.1)
    mask = jnp.asarray(rng.random((300, 16, 34)) < density)
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    actions, greedy, lp = jax.jit(
        jax.vmap(
            lambda k, l, m: (
                dist.sample(k, l, m),
                dist.mode(l, m),
                dist.log_prob(l, m, dist.sample(k, l, m)),
            )
        )
    )(keys, logits, mask)
    allowed = np.asarray(fallback_empty_rows(mask))

    def pick(a):
        return np.take_along_axis(allowed, np.asarray(a)[..., None], axis=-1)

    assert pick(actions).all() and pick(greedy).all()
    assert not np.asarray(mask).any(-1).all()  # some rows allow nothing (fallback exercised)
    assert bool(jnp.all(jnp.isfinite(lp))) and bool(jnp.all(lp <= 1e-6))


def test_sample_frequencies_match_renormalised_probabilities():
    logits = jnp.broadcast_to(jnp.array([0.0, 1.0, 2.0, 0.5]), (20000, 4))
    mask = jnp.broadcast_to(jnp.array([1, 1, 0, 1], bool), (20000, 4))
    counts = (
        np.bincount(np.asarray(dist.sample(jax.random.PRNGKey(0), logits, mask)), minlength=4)
        / 20000
    )
    expected = np.asarray(dist.probs(logits[0], mask[0]))
    assert counts[2] == 0.0
    np.testing.assert_allclose(counts, expected, atol=0.015)
