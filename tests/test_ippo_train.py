"""K-parallel training on the toy environment: equivalence, compilation, retention, evaluation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_env import ToyInventoryEnv

from envs_jax.core import MaskContext
from espark_jax.ippo import TrainConfig, make, selection_scores, train
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.ppo import PPOConfig
from espark_jax.ippo.rollout import apply_masks
from espark_jax.masks.builtin import get_builtin_mask

ENV = ToyInventoryEnv(n_warehouses=2, n_skus=4, episode_lengths=(8, 6, 6))
MASKS = ("upbound", "ss-pruning")
KEYS = jax.random.split(jax.random.PRNGKey(0), len(MASKS))
PPO = PPOConfig(update_epochs=2, num_minibatches=2)


@pytest.fixture(scope="module")
def runs():
    """K=2 learners trained together and each learner alone (K=1), from the same keys, 2 updates."""
    fns = [get_builtin_mask(n, ENV.spec) for n in MASKS]
    multi = make(ENV, TrainConfig(num_envs=4, ppo=PPO, fuse_chunk=False), fns)
    state, metrics = multi.train_chunk(multi.init_from_keys(KEYS), 2)
    single_cfg = TrainConfig(
        num_envs=4,
        ppo=PPO,
        fuse_chunk=False,
        updates_per_chunk=2,
        eval_every=2,
        select_last=2,
        eval_envs=2,
    )
    single = make(ENV, single_cfg, fns[:1])
    alone = []
    for k, fn in enumerate(fns):
        single.set_masks([fn])
        s, m = single.train_chunk(single.init_from_keys(KEYS[k : k + 1]), 2)
        alone.append((s, m))
    return {
        "multi": multi,
        "state": state,
        "metrics": metrics,
        "single": single,
        "alone": alone,
        "fns": fns,
    }


def test_k_vmapped_equals_k_separate_runs_bitwise(runs):
    state, metrics = runs["state"], runs["metrics"]
    for k, (s, m) in enumerate(runs["alone"]):
        same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a[k], b[0])), state, s)
        assert all(jax.tree_util.tree_leaves(same)), (MASKS[k], same)
        for name in metrics:
            assert bool(jnp.array_equal(metrics[name][:, k], m[name][:, 0], equal_nan=True)), (
                MASKS[k],
                name,
            )
    # the learners really differ (different masks and keys)
    assert not bool(
        jnp.array_equal(state.params["actor_0"]["kernel"][0], state.params["actor_0"]["kernel"][1])
    )
    allowed = np.asarray(metrics["allowed_fraction"][-1])
    assert allowed[0] == 6 / 8 and allowed[1] < 0.5


def test_update_is_not_retraced_or_recompiled_when_masks_change(runs):
    single = runs["single"]
    assert single.trace_counts == {"rollout": len(MASKS), "update": 1}
    assert len(single.compile_seconds["update"]) == 1 and len(
        single.compile_seconds["rollout"]
    ) == len(MASKS)
    multi = runs["multi"]
    assert multi.trace_counts["update"] == 1
    # switching back to an earlier mask set reuses its compiled rollout
    single.set_masks([runs["fns"][0]])
    single.train_chunk(single.init_from_keys(KEYS[:1]), 1)
    assert single.trace_counts == {"rollout": len(MASKS), "update": 1}


def test_rollout_is_compiled_with_its_own_xla_options(runs):
    """The per-mask-set rollout gets ROLLOUT_CPU_OPTIONS on CPU; TimedJit really passes options
    to XLA (an unknown option is rejected by the compile)."""
    from espark_jax.ippo.compiled import ProgramLog, TimedJit
    from espark_jax.ippo.jax_source import ROLLOUT_CPU_OPTIONS

    program = runs["single"].source.rollout_program
    want = ROLLOUT_CPU_OPTIONS if jax.default_backend() == "cpu" else None
    assert program.compiler_options == want
    bad = TimedJit(lambda x: x + 1, "probe", ProgramLog(), compiler_options={"xla_no_such": 1})
    with pytest.raises(Exception, match="xla_no_such"):
        bad(jnp.zeros(3))
    good = TimedJit(lambda x: x + 1, "probe", ProgramLog(), compiler_options=ROLLOUT_CPU_OPTIONS)
    np.testing.assert_array_equal(good(jnp.zeros(3)), np.ones(3))


def test_buffer_stores_behaviour_masks_and_actions_respect_them(runs):
    single = runs["single"]
    single.set_masks([runs["fns"][0]])  # upbound: multipliers <= 3 (6 of the 8 actions)
    start = single.init_from_keys(KEYS[:1])
    # the rollout donates `start`
    params = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), start.params)
    _, traj, _, _, _, extras = single.rollout(start)
    assert extras == {}  # a JAX source adds no per-episode metrics
    expected = np.asarray(ENV.spec.action_values) <= 3.0
    assert traj.mask.shape == (8, 1, 4, ENV.spec.n_agents, 8) and traj.mask.dtype == jnp.bool_
    assert (np.asarray(traj.mask) == expected).all()
    assert expected[np.asarray(traj.action)].all()
    logits, _ = single.network.apply({"params": params}, traj.obs[:, 0])
    np.testing.assert_allclose(
        traj.log_prob[:, 0],
        dist.log_prob(logits, traj.mask[:, 0], traj.action[:, 0]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_retention_broadcasts_one_learner_to_all_slots(runs):
    multi, state = runs["multi"], runs["state"]
    retained = multi.retain(state, 1, jax.random.PRNGKey(9))
    for a, b in zip(
        jax.tree_util.tree_leaves(retained.params), jax.tree_util.tree_leaves(state.params)
    ):
        assert all(bool(jnp.array_equal(a[k], b[1])) for k in range(len(MASKS)))
    for a, b in zip(
        jax.tree_util.tree_leaves(retained.opt_state), jax.tree_util.tree_leaves(state.opt_state)
    ):
        assert all(bool(jnp.array_equal(a[k], b[1])) for k in range(len(MASKS)))
    assert int(retained.envs.state.day.max()) == 0  # fresh environments
    assert not bool(jnp.array_equal(retained.key[0], retained.key[1]))


def test_evaluation_components_add_up_and_greedy_is_deterministic(runs):
    multi, params = runs["multi"], runs["state"].params
    ev = multi.evaluate(params, jax.random.PRNGKey(1), split="test", greedy=True, num_envs=3)
    again = multi.evaluate(params, jax.random.PRNGKey(1), split="test", greedy=True, num_envs=3)
    sampled = multi.evaluate(params, jax.random.PRNGKey(1), split="test", greedy=False, num_envs=3)
    assert ev["return"] == again["return"] and ev["return"] != sampled["return"]
    c = {n: np.sum([v for v in g.values()], axis=0) for n, g in ev["components"].items()}
    net = c["profit"] - c["excess_cost"] - c["order_cost"] - c["holding_cost"] - c["backlog_cost"]
    np.testing.assert_allclose(net, ev["return"], rtol=1e-4)
    np.testing.assert_allclose(
        np.sum(list(ev["group_return"].values()), axis=0), ev["return"], rtol=1e-5
    )
    assert set(ev["group_return"]) == {"store0", "store1"} and len(ev["return"]) == len(MASKS)
    assert multi.compile_seconds["evaluate"]  # one program for greedy and sampled
    assert len(multi.compile_seconds["evaluate"]) == 1


def test_train_driver_writes_metrics_and_selection_scores(runs, tmp_path):
    single = runs["single"]
    single.set_masks([runs["fns"][0]])
    path = tmp_path / "metrics.jsonl"
    result = train(
        single,
        single.init_from_keys(KEYS[:1]),
        jax.random.PRNGKey(2),
        num_updates=4,
        metrics_path=str(path),
        progress=False,
    )
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["train", "eval", "train", "eval"]
    assert [e["update"] for e in result.evals] == [2, 4] and records[-1]["env_steps"] == 4 * 8 * 4
    assert result.scores == pytest.approx([np.mean([e["return"][0] for e in result.evals])])
    assert int(result.state.n_updates[0]) == 4 and records[0]["train_return"][0] is not None
    with pytest.raises(ValueError, match="no evaluation"):
        selection_scores([], 3)


def test_masked_evaluation_applies_each_learners_mask(runs):
    single = runs["single"]

    def nothing(ctx, action_space):  # never order
        return jnp.broadcast_to(action_space == 0, (2, 4, 8))

    single.set_masks([nothing])
    params = single.init_from_keys(KEYS[:1]).params
    ev = single.evaluate(
        params, jax.random.PRNGKey(3), split="test", greedy=False, num_envs=2, masked=True
    )
    assert ev["masked"] and sum(v[0] for v in ev["components"]["order_cost"].values()) == 0.0
    raw = single.evaluate(params, jax.random.PRNGKey(3), split="test", greedy=False, num_envs=2)
    assert sum(v[0] for v in raw["components"]["order_cost"].values()) > 0.0


def test_mask_shape_errors_and_k_mismatch(runs):
    ctx = MaskContext({"in_stock": jnp.zeros((1, 1, 2, 4))})  # [K, E, W, N]

    def bad(c, a):
        return jnp.ones((3, 8))

    with pytest.raises(ValueError, match=r"must return \[\*agent_shape, A\] = \(2, 4, 8\)"):
        apply_masks([bad], ctx, jnp.zeros((1, 1, 2), jnp.uint32), jnp.arange(8.0), (2, 4))
    with pytest.raises(ValueError, match="build a new Trainer"):
        runs["multi"].set_masks(runs["fns"][:1])
