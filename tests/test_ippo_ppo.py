"""GAE, the PPO loss, the optimizer and the batch-invariant helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from espark_jax.ippo.batching import invariant_mean, invariant_sum, kmap
from espark_jax.ippo.networks import ActorCritic, init_params
from espark_jax.ippo.ppo import PPOConfig, compute_gae, make_optimizer, ppo_loss


def test_gae_hand_computed():
    # gamma 0.9, lambda 0.8; the episode ends with transition 1 (no bootstrap through it)
    rewards = jnp.array([1.0, 2.0, 3.0])
    values = jnp.array([0.5, 1.0, 1.5])
    dones = jnp.array([False, True, False])
    adv, target = compute_gae(rewards, values, dones, jnp.array(2.0), gamma=0.9, lam=0.8)
    # t=2: 3 + .9*2 - 1.5 = 3.3;  t=1: 2 - 1 = 1.0;  t=0: (1 + .9*1 - .5) + .9*.8*1.0 = 2.12
    np.testing.assert_allclose(adv, [2.12, 1.0, 3.3], rtol=1e-6)
    np.testing.assert_allclose(target, [2.62, 2.0, 4.8], rtol=1e-6)


def test_gae_broadcasts_env_dones_over_agents_and_lambda_one_is_monte_carlo():
    rng = np.random.default_rng(0)
    r = jnp.asarray(rng.normal(size=(5, 2, 3)), jnp.float32)  # [T, E, agents]
    v = jnp.asarray(rng.normal(size=(5, 2, 3)), jnp.float32)
    d = jnp.zeros((5, 2), bool).at[4].set(True)  # every env ends at the last step
    adv, target = compute_gae(r, v, d, jnp.zeros((2, 3)), gamma=0.5, lam=1.0)
    returns = np.zeros((2, 3))
    expected = np.zeros((5, 2, 3))
    for t in reversed(range(5)):
        returns = np.asarray(r[t]) + 0.5 * returns
        expected[t] = returns
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)


def test_ppo_loss_at_behaviour_policy():
    net = ActorCritic(n_actions=5, hidden=(8,))
    params = init_params(net, jax.random.PRNGKey(0), 4)
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
    mask = jnp.asarray(rng.random((64, 5)) < 0.6)
    logits, value = net.apply({"params": params}, obs)
    action = jnp.asarray(rng.integers(0, 5, 64), jnp.int32)
    from espark_jax.ippo import distributions as dist

    batch = {
        "obs": obs,
        "action": action,
        "log_prob": dist.log_prob(logits, mask, action),
        "value": value,
        "mask": mask,
        "advantage": jnp.asarray(rng.normal(size=64), jnp.float32),
        "target": value + 1.0,
    }
    loss, aux = ppo_loss(params, lambda p, o: net.apply({"params": p}, o), batch, PPOConfig())
    # ratio 1 everywhere: policy loss = -mean(normalised advantage) = 0; no clipping;
    # value loss .5 * 1
    assert abs(float(aux["policy_loss"])) < 1e-5
    assert float(aux["clip_fraction"]) == 0.0 and abs(float(aux["approx_kl"])) < 1e-6
    np.testing.assert_allclose(aux["value_loss"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(aux["entropy"], jnp.mean(dist.entropy(logits, mask)), rtol=1e-5)
    np.testing.assert_allclose(loss, aux["policy_loss"] + 0.5 * aux["value_loss"], rtol=1e-5)


def test_optimizer_matches_optax_adam_with_clipping():
    cfg = PPOConfig(max_grad_norm=1.0)
    ours = make_optimizer(cfg)
    ref = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.lr, eps=cfg.adam_eps))
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
    s_ours, s_ref = ours.init(params), ref.init(params)
    rng = np.random.default_rng(2)
    for step in range(5):
        scale = 0.1 if step % 2 else 10.0  # alternate below and above the clipping norm
        grads = {
            k: jnp.asarray(rng.normal(size=v.shape) * scale, jnp.float32) for k, v in params.items()
        }
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_ref, s_ref = ref.update(grads, s_ref, params)
        for k in params:
            np.testing.assert_allclose(u_ours[k], u_ref[k], rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("n", [1, 5, 54, 64, 1000])
def test_invariant_sum_and_mean(n):
    x = jnp.asarray(np.random.default_rng(n).normal(size=(3, n)), jnp.float32)
    np.testing.assert_allclose(
        invariant_sum(x, axis=-1), np.asarray(x, np.float64).sum(-1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        invariant_mean(x), np.asarray(x, np.float64).mean(), rtol=1e-4, atol=1e-6
    )


def test_kmap_matches_vmap_and_handles_shared_arguments():
    def f(a, b, c):
        return a @ b + c, jnp.sum(a)

    a = jnp.arange(24.0).reshape(2, 3, 4)
    b = jnp.ones((4, 2))
    c = jnp.arange(4.0).reshape(2, 2)
    for k in (1, 2):
        out = kmap(f, (0, None, 0))(a[:k], b, c[:k])
        ref = jax.vmap(f, (0, None, 0))(a[:k], b, c[:k])
        jax.tree_util.tree_map(np.testing.assert_allclose, out, ref)
    with pytest.raises(ValueError, match="disagree"):
        kmap(f, (0, None, 0))(a, b, c[:1])


def test_mask_distillation_pulls_the_unmasked_policy_into_the_mask():
    from espark_jax.ippo import distributions as dist

    net = ActorCritic(n_actions=4, hidden=(8,))
    params = init_params(net, jax.random.PRNGKey(2), 3)

    def apply(p, o):
        return net.apply({"params": p}, o)

    rng = np.random.default_rng(3)
    obs = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    mask = jnp.broadcast_to(jnp.asarray([True, True, False, False]), (32, 4))
    logits, value = apply(params, obs)
    batch = {
        "obs": obs,
        "action": jnp.zeros(32, jnp.int32),
        "log_prob": dist.log_prob(logits, mask, jnp.zeros(32, jnp.int32)),
        "value": value,
        "mask": mask,
        "advantage": jnp.zeros(32),
        "target": value,
    }
    cfg = PPOConfig(mask_distill_coef=0.5)
    loss, aux = ppo_loss(params, apply, batch, cfg)
    inside = np.asarray(jax.nn.softmax(logits, -1))[:, :2].sum(-1)  # by hand
    np.testing.assert_allclose(aux["raw_mass_in_mask"], inside.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, -0.5 * np.log(inside).mean(), rtol=1e-4, atol=1e-6)
    grads = jax.grad(lambda p: ppo_loss(p, apply, batch, cfg)[0])(params)
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads)
    after = np.asarray(jax.nn.softmax(apply(stepped, obs)[0], -1))[:, :2].sum(-1)
    assert after.mean() > inside.mean()  # one gradient step moves mass into the mask
    full = {**batch, "mask": jnp.ones((32, 4), bool)}
    assert abs(float(ppo_loss(params, apply, full, cfg)[0])) < 1e-6  # nothing to distil
