"""The GRU actor-critic (``TrainConfig(network="gru")``): hand-computed cell and layer norm,
hidden state reset at episode boundaries, sequence replay in the update, K-vs-separate equality,
evaluation and checkpoints (the learning test is in ``test_ippo_recurrent_learning.py``)."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_env import ToyInventoryEnv

import envs_jax
from espark_jax.ippo import TrainConfig, make
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import kmap
from espark_jax.ippo.evaluate import make_evaluate
from espark_jax.ippo.ppo import PPOConfig, ppo_loss
from espark_jax.ippo.recurrent import GRUCell, LayerNorm, RecurrentPolicy, Sequences
from espark_jax.masks.builtin import get_builtin_mask

# train episodes of 5 steps inside rollouts of 12: episodes end at steps 4 and 9
ENV = ToyInventoryEnv(n_warehouses=2, n_skus=2, episode_lengths=(5, 6, 4))
MASKS = ("upbound", "ss-pruning")
KEYS = jax.random.split(jax.random.PRNGKey(0), len(MASKS))
CFG = TrainConfig(
    num_envs=3,
    num_steps=12,
    network="gru",
    hidden=(8,),
    layer_norm=True,
    last_action=True,
    ppo=PPOConfig(update_epochs=2, num_minibatches=2),
    eval_envs=2,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_gru_cell_and_layer_norm_match_hand_computation():
    rng = np.random.default_rng(0)
    h, x = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    cell = GRUCell(3)
    params = cell.init(jax.random.PRNGKey(1), jnp.asarray(h), jnp.asarray(x))["params"]
    wi, bi = np.asarray(params["input"]["kernel"]), np.asarray(params["input"]["bias"]) + 0.1
    wh, bh = np.asarray(params["hidden"]["kernel"]), np.asarray(params["hidden"]["bias"]) - 0.2
    params = {"input": {"kernel": wi, "bias": bi}, "hidden": {"kernel": wh, "bias": bh}}
    out = np.asarray(cell.apply({"params": params}, jnp.asarray(h), jnp.asarray(x)))
    gx, gh = x @ wi + bi, h @ wh + bh  # gates in PyTorch's order r, z, n
    r = _sigmoid(gx[:, 0:3] + gh[:, 0:3])
    z = _sigmoid(gx[:, 3:6] + gh[:, 3:6])
    n = np.tanh(gx[:, 6:9] + r * gh[:, 6:9])
    np.testing.assert_allclose(out, (1 - z) * n + z * h, rtol=1e-5, atol=1e-6)

    v = rng.normal(size=(4, 5)).astype(np.float32) * 3 + 1
    norm = {"scale": np.arange(1, 6, dtype=np.float32), "bias": np.full(5, 0.5, np.float32)}
    got = np.asarray(LayerNorm().apply({"params": norm}, jnp.asarray(v)))
    mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    want = (v - mu) / np.sqrt(var + 1e-5) * norm["scale"] + norm["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_advance_resets_memory_where_an_episode_ended():
    trainer = make(ENV, CFG)
    policy = trainer.apply_fn
    assert isinstance(policy, RecurrentPolicy)
    memory = {
        "actor": jnp.ones((2, 3, 4, 8)),
        "critic": jnp.full((2, 3, 4, 8), 2.0),
        "action": jnp.zeros((2, 3, 4), jnp.int32),
    }
    done = jnp.asarray([[True, False, False], [False, False, True]])
    action = jnp.full((2, 3, 4), 5, jnp.int32)
    out = jax.device_get(policy.advance(memory, action, done))
    d = np.asarray(done)
    assert (out["actor"][d] == 0).all() and (out["actor"][~d] == 1).all()
    assert (out["critic"][d] == 0).all() and (out["critic"][~d] == 2).all()
    assert (out["action"][d] == -1).all() and (out["action"][~d] == 5).all()
    start = jax.device_get(policy.initial((2, 3)))
    assert (start["actor"] == 0).all() and (start["action"] == -1).all()


@pytest.fixture(scope="module")
def rollout():
    """One learner's rollout of 12 steps over episodes of 5 (two resets inside it)."""
    trainer = make(ENV, CFG, [get_builtin_mask(MASKS[0], ENV.spec)])
    assert not trainer.source.reset_at_end
    state = trainer.init_from_keys(KEYS[:1])
    params = jax.device_get(state.params)
    state, traj, last_value, _, _, _ = trainer.rollout(state)
    return trainer, params, jax.device_get(state), jax.device_get(traj)


def test_rollout_resets_hidden_state_at_episode_boundaries(rollout):
    trainer, params, state, traj = rollout
    assert isinstance(traj, Sequences)
    done = np.asarray(traj.steps.done[:, 0])  # [T, E]
    assert done[4].all() and done[9].all() and done.sum() == 2 * done.shape[1]
    assert (traj.memory["actor"] == 0).all() and (traj.memory["action"] == -1).all()
    # hand-made: the carried memory after step 11 equals a replay from zeros of steps 10 and 11
    # (the episode started at step 10), with the actions taken there
    policy, p = trainer.apply_fn, jax.tree_util.tree_map(lambda x: x[0], params)
    memory = policy.initial(done.shape[1:] + (ENV.spec.n_agents,))
    for t in (10, 11):
        memory, _, _ = policy.step(p, memory, traj.steps.obs[t, 0])
        memory = {**memory, "action": traj.steps.action[t, 0]}
    for name in ("actor", "critic", "action"):
        np.testing.assert_allclose(state.envs.memory[name][0], memory[name], rtol=1e-6, atol=1e-6)
    assert np.abs(memory["actor"]).max() > 0.01


def test_update_replay_reproduces_the_behaviour_policy(rollout):
    trainer, params, _, traj = rollout
    policy, p = trainer.apply_fn, jax.tree_util.tree_map(lambda x: x[0], params)
    steps = jax.tree_util.tree_map(lambda x: x[:, 0], traj.steps)  # [T, E, n, ...]
    memory = jax.tree_util.tree_map(lambda x: x[0], traj.memory)
    starts = np.concatenate([np.zeros_like(steps.done[:1]), steps.done[:-1]])
    starts = np.broadcast_to(starts[..., None], steps.action.shape)
    logits, value = policy.sequence(p, memory, steps.obs, starts, steps.action)
    np.testing.assert_allclose(
        dist.log_prob(logits, steps.mask, steps.action), steps.log_prob, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(value, steps.value, rtol=1e-5, atol=1e-5)
    batch = {
        "obs": steps.obs,
        "action": steps.action,
        "log_prob": steps.log_prob,
        "value": steps.value,
        "mask": steps.mask,
        "advantage": jnp.asarray(np.random.default_rng(0).normal(size=steps.action.shape)),
        "target": steps.value,
        "start": starts,
        "memory": memory,
    }
    _, aux = ppo_loss(p, policy, batch, CFG.ppo)
    assert abs(float(aux["approx_kl"])) < 1e-6 and float(aux["clip_fraction"]) == 0.0
    # the resets matter: a replay that carries the memory across episodes differs
    carried, _ = policy.sequence(p, memory, steps.obs, np.zeros_like(starts), steps.action)
    assert np.abs(np.asarray(carried[5:]) - np.asarray(logits[5:])).max() > 1e-4


# XLA's CPU code generator may fuse ``a * b + c`` into one fused multiply-add (AVX2/FMA) or not
# depending on the loop nest around it, and hands large elementwise fusions to YNNPACK (another
# exp) by size: an unbatched program (one learner) and its vmapped twin (K learners) then round
# differently in the last bit. The equality below holds with both turned off.
EXACT_FLAGS = "--xla_cpu_max_isa=AVX --xla_cpu_experimental_ynn_fusion_type="

K_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import jax, jax.numpy as jnp
    from test_ippo_recurrent import CFG, ENV, KEYS, MASKS
    from espark_jax.ippo import make
    from espark_jax.masks.builtin import get_builtin_mask
    fns = [get_builtin_mask(n, ENV.spec) for n in MASKS]
    multi = make(ENV, CFG, fns)
    state, metrics = multi.train_chunk(multi.init_from_keys(KEYS), 2)
    single = make(ENV, CFG, fns[:1])
    for k, fn in enumerate(fns):
        single.set_masks([fn])
        s, m = single.train_chunk(single.init_from_keys(KEYS[k : k + 1]), 2)
        same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a[k], b[0])), state, s)
        assert all(jax.tree_util.tree_leaves(same)), (MASKS[k], same)
        for name in metrics:
            assert bool(jnp.array_equal(metrics[name][:, k], m[name][:, 0], equal_nan=True)), name
        # greedy evaluation: K learners at once equal each alone (sampled evaluation draws its
        # noise by learner slot, common random numbers, so it is compared in no slot but 0)
        one = jax.tree_util.tree_map(lambda x: x[k : k + 1], state.params)
        ev = multi.evaluate(state.params, jax.random.PRNGKey(4), greedy=True)
        alone = single.evaluate(one, jax.random.PRNGKey(4), greedy=True)
        assert alone["return"] == [ev["return"][k]], (alone["return"], ev["return"])
    assert single.trace_counts == {"rollout": len(MASKS), "update": 1}, single.trace_counts
    kernels = state.params["actor_gru"]["hidden"]["kernel"]
    assert not bool(jnp.array_equal(kernels[0], kernels[1]))
    print("ok")
""")


def test_k_vmapped_gru_equals_k_separate_runs_bitwise():
    """K = 2 GRU learners trained together equal each trained alone, bit for bit (2 updates with
    resets inside the rollouts; greedy evaluation), in a fresh process with
    :data:`EXACT_FLAGS`."""
    env = {**os.environ, "XLA_FLAGS": EXACT_FLAGS, "JAX_PLATFORMS": "cpu"}
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", K_SCRIPT, here], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_evaluation_carries_the_hidden_state():
    """The evaluation program equals a loop that steps the memory by hand (on mabim/tiny: the toy
    environment's sine hash would amplify rounding differences between programs)."""
    env = envs_jax.make("mabim/tiny")
    trainer = make(env, dataclasses.replace(CFG, num_steps=0, eval_envs=2))
    params = trainer.init(jax.random.PRNGKey(5)).params
    # decisive logits (the fresh head's gain 0.01 leaves near-ties that rounding may flip)
    params = {**params, "actor_head": {**params["actor_head"]}}
    params["actor_head"]["kernel"] = params["actor_head"]["kernel"] * 300.0
    policy, env_params = trainer.apply_fn, env.default_params("test")
    length, n_envs = 12, 2
    evaluate = jax.jit(make_evaluate(env, policy, length, n_envs))
    key = jax.random.PRNGKey(7)
    got = jax.device_get(evaluate(params, key, env_params, jnp.asarray(True)))["return"]

    @jax.jit
    def by_hand(memory, obs, state, step_key):
        memory, logits, _ = kmap(policy.step)(params, memory, obs[None])
        action = dist.mode(logits[0])
        memory = policy.advance(memory, action[None], jnp.zeros((1, n_envs), bool))
        env_keys = jax.random.split(jax.random.split(step_key, 3)[1], n_envs)
        obs, state, reward, _, _ = jax.vmap(env.step, (0, 0, 0, None))(
            env_keys, state, action, env_params
        )
        return memory, obs, state, reward.sum(-1)

    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, n_envs), env_params)
    memory, total = policy.initial((1, n_envs, env.spec.n_agents)), np.zeros(n_envs)
    for step_key in jax.random.split(k_run, length):
        memory, obs, state, reward = by_hand(memory, obs, state, step_key)
        total += np.asarray(reward)
    np.testing.assert_allclose(got[0], total, rtol=1e-5)
    # without the memory (zeros every step) the greedy actions, hence the returns, differ
    stateless = jax.jit(make_evaluate(env, _Forgetful(policy), length, n_envs))
    forgot = jax.device_get(stateless(params, key, env_params, jnp.asarray(True)))["return"]
    assert not np.allclose(forgot, got)


class _Forgetful(RecurrentPolicy):
    """A policy whose memory is wiped before every step (for the test above)."""

    def __init__(self, policy):
        super().__init__(policy.network)

    def advance(self, memory, action, done):
        return self.initial(action.shape)


def test_checkpoint_restores_gru_params(rollout, tmp_path):
    trainer, params, _, _ = rollout
    state = trainer.init_from_keys(KEYS[1:])
    learner = trainer.learner(state, 0)
    trainer.save_learner(tmp_path / "ckpt", learner)
    restored = trainer.load_learner(tmp_path / "ckpt")
    same = jax.tree_util.tree_map(np.array_equal, jax.device_get(learner), restored)
    assert all(jax.tree_util.tree_leaves(same))
    assert set(restored["params"]) >= {"actor_gru", "critic_gru", "critic_norm"}


def test_network_option_errors_name_the_fix():
    with pytest.raises(ValueError, match="--hidden 128"):
        TrainConfig(network="gru")
    with pytest.raises(ValueError, match="--network gru only"):
        TrainConfig(layer_norm=True)
    with pytest.raises(ValueError, match="--network mlp or --network gru"):
        TrainConfig(network="lstm", hidden=(8,))


def test_network_flags_reach_the_trainer_config():
    import argparse

    from espark_jax.cli_args import network_hidden
    from espark_jax.cli_search import _config_from_args, add_run_parser
    from espark_jax.cli_train import add_train_parser
    from espark_jax.search_config import train_config

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_run_parser(sub)
    add_train_parser(sub)
    args = parser.parse_args(["train", "--network", "gru", "--last-action"])
    assert (network_hidden(args), args.layer_norm, args.last_action) == ((128,), False, True)
    assert network_hidden(parser.parse_args(["train"])) == (64, 64)
    run = ["run", "--scenario", "mabim/tiny", "--network", "gru", "--layer-norm"]
    cfg = _config_from_args(parser.parse_args(run))
    assert (cfg.network, cfg.hidden, cfg.layer_norm, cfg.last_action) == (
        "gru",
        (128,),
        True,
        False,
    )
    tc, _ = train_config(cfg, ENV)
    assert (tc.network, tc.hidden, tc.layer_norm, tc.last_action) == ("gru", (128,), True, False)
    plain = _config_from_args(parser.parse_args(["run", "--scenario", "mabim/tiny"]))
    assert (plain.network, plain.hidden, plain.layer_norm) == ("mlp", (64, 64), False)


def test_host_environment_rejects_the_gru_in_one_line(tmp_path):
    from espark_jax.cli import main

    argv = ["train", "--scenario", "sumo/grid2x2", "--network", "gru", "--steps", "100"]
    with pytest.raises(SystemExit, match="needs a JAX environment.*--network mlp"):
        main([*argv, "--num-envs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
