"""Linear learning-rate annealing (PPOConfig.anneal_updates, SearchConfig.anneal_lr)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import envs_jax
from espark_jax import ippo
from espark_jax.ippo.ppo import PPOConfig, make_optimizer
from espark_jax.masks.safe import all_ones
from espark_jax.search_config import SearchConfig, train_config


def test_annealed_rate_falls_linearly_per_update_by_hand():
    # lr 0.1 over 4 updates of 1 epoch x 2 minibatches: each update's two optimizer steps share
    # one rate, 0.1 * (1 - u / 4) for u = 0..3, then 0
    cfg = PPOConfig(lr=0.1, anneal_updates=4, update_epochs=1, num_minibatches=2, max_grad_norm=1e9)
    ours = make_optimizer(cfg)
    ref = optax.adam(1.0, eps=cfg.adam_eps)  # Adam's direction at rate 1
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    s_ours, s_ref = ours.init(params), ref.init(params)
    rng = np.random.default_rng(0)
    want = [0.1, 0.1, 0.075, 0.075, 0.05, 0.05, 0.025, 0.025, 0.0, 0.0]
    for rate in want:
        grads = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_ref, s_ref = ref.update(grads, s_ref, params)
        for k in params:
            np.testing.assert_allclose(u_ours[k], rate * u_ref[k], rtol=2e-5, atol=1e-9)


def test_constant_rate_keeps_the_optimizer_state_without_a_step_count():
    leaves = jax.tree_util.tree_leaves(make_optimizer(PPOConfig()).init({"w": jnp.ones(3)}))
    annealed = make_optimizer(PPOConfig(anneal_updates=3)).init({"w": jnp.ones(3)})
    assert len(jax.tree_util.tree_leaves(annealed)) == len(leaves) + 1  # + the int32 count
    with pytest.raises(ValueError, match="anneal_updates must be >= 0"):
        PPOConfig(anneal_updates=-1)


def test_annealed_learner_stops_moving_once_the_rate_reaches_zero():
    env = envs_jax.make("mabim/tiny")
    cfg = ippo.TrainConfig(
        num_envs=2,
        num_updates=3,
        updates_per_chunk=1,
        ppo=PPOConfig(lr=1e-2, update_epochs=1, num_minibatches=2, anneal_updates=2),
    )
    trainer = ippo.make(env, cfg, [all_ones(env.spec)])
    state = trainer.init(jax.random.PRNGKey(0))

    def leaves(params):  # host copies: the trainer donates its state's buffers
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]

    snapshots = [leaves(state.params)]
    for _ in range(3):
        state, _ = trainer.train_chunk(state, 1)
        snapshots.append(leaves(state.params))
    moved = [
        any(bool(np.any(a != b)) for a, b in zip(x, y)) for x, y in zip(snapshots, snapshots[1:])
    ]
    assert moved == [True, True, False]  # updates 0 and 1 at lr 1e-2 and 5e-3, update 2 at 0


def test_search_config_anneals_over_every_iteration_of_the_run():
    env = envs_jax.make("mabim/tiny")
    run = SearchConfig.from_preset("quick", scenario="mabim/tiny", anneal_lr=True)
    tc, updates = train_config(run, env)
    assert tc.ppo.anneal_updates == updates * run.iterations
    assert train_config(SearchConfig.from_preset("paper"), env)[0].ppo.anneal_updates == 0
    assert SearchConfig(**run.to_dict()) == run


def test_quick_preset_takes_the_budget_settings_from_1e5_steps_unless_given():
    from espark_jax.cli import build_parser
    from espark_jax.cli_search import _config_from_args

    quick = SearchConfig.from_preset("quick")
    assert (quick.num_envs, quick.anneal_lr) == (2, False)  # the quick budget: unchanged
    big = SearchConfig.from_preset("quick", steps=200_000)
    assert (big.num_envs, big.anneal_lr, big.lr) == (16, True, quick.lr)
    assert SearchConfig.from_preset("quick", steps=99_999).num_envs == 2
    mine = SearchConfig.from_preset("quick", steps=200_000, num_envs=4, anneal_lr=False)
    assert (mine.num_envs, mine.anneal_lr) == (4, False)
    assert SearchConfig.from_preset("paper").anneal_lr is False  # the paper's constant rate
    assert SearchConfig.from_preset("quick", scenario="sumo/grid4x4", steps=200_000).num_envs == 1

    def parsed(*argv: str) -> SearchConfig:
        return _config_from_args(build_parser().parse_args(["run", "--preset", "quick", *argv]))

    assert (parsed("--steps", "2e5").num_envs, parsed("--steps", "2e5").anneal_lr) == (16, True)
    assert parsed("--steps", "2e5", "--no-anneal-lr").anneal_lr is False
    assert parsed("--anneal-lr").anneal_lr is True
