"""GAE, the PPO loss, the optimizer and the batch-invariant helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from espark_jax.ippo.batching import invariant_mean, invariant_sum, kmap
from espark_jax.ippo.networks import ActorCritic, init_params
from espark_jax.ippo.ppo import (
    PPOConfig,
    agent_return_scale,
    compute_gae,
    make_optimizer,
    normalise_rewards,
    ppo_loss,
)


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


def test_agent_return_scale_hand_computed():
    # one env, two agents, gamma 0.5; the episode ends with transition 1, a new one starts at 2
    r = jnp.array([[[1.0, 10.0]], [[2.0, 20.0]], [[4.0, 40.0]]])  # [T=3, E=1, N=2]
    d = jnp.array([[False], [True], [False]])
    # reward-to-go, agent 0: t1 = 2, t0 = 1 + .5 * 2 = 2, t2 = 4 -> rms sqrt((4 + 4 + 16) / 3)
    scale = agent_return_scale(r, d, gamma=0.5)
    np.testing.assert_allclose(scale, [np.sqrt(8.0), 10 * np.sqrt(8.0)], rtol=1e-6)
    # all-zero rewards keep their zeros (the floor stops a division by zero)
    zero = normalise_rewards(jnp.zeros((3, 1, 1, 2)), d[:, None], PPOConfig(reward_norm="agent"))
    assert np.all(np.asarray(zero) == 0)


def test_agent_reward_norm_makes_each_agents_returns_unit_scale_and_is_k_invariant():
    rng = np.random.default_rng(3)
    # [T, K, E, N]: agents of very different magnitudes, two learners
    r = jnp.asarray(rng.normal(1.0, 0.5, (6, 2, 3, 4)) * np.array([1, 10, 1e3, 1e5]), jnp.float32)
    d = jnp.zeros((6, 2, 3), bool).at[2].set(True)
    cfg = PPOConfig(reward_norm="agent", gamma=0.9)
    out = np.asarray(normalise_rewards(r, d, cfg))
    for k in range(2):
        returns, _ = compute_gae(
            jnp.asarray(out[:, k]), jnp.zeros_like(out[:, k]), d[:, k], jnp.zeros((3, 4)), 0.9, 1.0
        )
        rms = np.sqrt(np.mean(np.square(np.asarray(returns)), axis=(0, 1)))
        np.testing.assert_allclose(rms, 1.0, rtol=1e-5)
    # slot 1 of the two-learner result equals a one-learner call, bit for bit
    alone = np.asarray(normalise_rewards(r[:, 1:], d[:, 1:], cfg))
    np.testing.assert_array_equal(alone[:, 0], out[:, 1])
    assert normalise_rewards(r, d, PPOConfig()) is r  # "none" leaves them as stored
    with pytest.raises(ValueError, match="reward_norm"):
        PPOConfig(reward_norm="global")


def test_value_loss_clipping_switch():
    net = ActorCritic(n_actions=3, hidden=(8,))
    params = init_params(net, jax.random.PRNGKey(0), 2)
    obs = jnp.ones((4, 2), jnp.float32)
    logits, value = net.apply({"params": params}, obs)
    batch = {
        "obs": obs,
        "action": jnp.zeros(4, jnp.int32),
        "log_prob": jnp.log(jax.nn.softmax(logits))[:, 0],
        "value": value - 1.0,  # the stored value is 1 below the current one
        "mask": jnp.ones((4, 3), bool),
        "advantage": jnp.arange(4.0),
        "target": value + 2.0,
    }
    apply = lambda p, o: net.apply({"params": p}, o)  # noqa: E731
    _, clipped = ppo_loss(params, apply, batch, PPOConfig(clip_eps=0.2))
    _, plain = ppo_loss(params, apply, batch, PPOConfig(clip_eps=0.2, clip_value=False))
    # unclipped: .5 * 2^2; clipped: the clipped prediction (old + .2) is 2.8 from the target
    np.testing.assert_allclose(plain["value_loss"], 2.0, rtol=1e-5)
    np.testing.assert_allclose(clipped["value_loss"], 0.5 * 2.8**2, rtol=1e-5)


def test_reward_norm_reaches_the_update_from_presets_and_the_command_line():
    import envs_jax
    from espark_jax.cli import build_parser
    from espark_jax.cli_search import _config_from_args
    from espark_jax.search_config import SearchConfig, train_config

    env = envs_jax.make("mabim/tiny")
    quick = SearchConfig.from_preset("quick", scenario="mabim/tiny")
    ppo = train_config(quick, env)[0].ppo
    assert (ppo.reward_norm, ppo.clip_value) == ("agent", True)  # measured for MABIM
    assert SearchConfig.from_preset("paper").reward_norm == "none"  # the paper's PPO
    assert SearchConfig.from_preset("quick", scenario="sumo/grid4x4").reward_norm == "none"

    def parsed(*argv: str) -> SearchConfig:
        return _config_from_args(build_parser().parse_args(["run", "--preset", "quick", *argv]))

    run = parsed("--reward-norm", "none", "--no-clip-value")
    assert (run.reward_norm, run.clip_value) == ("none", False)
    assert SearchConfig(**run.to_dict()) == run  # survives the manifest
    with pytest.raises(ValueError, match="--reward-norm"):
        SearchConfig(reward_norm="batch")
