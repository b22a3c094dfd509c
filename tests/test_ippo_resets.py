"""Resets outside the mask-dependent rollout program (fixed-length MABIM episodes)."""

import jax
import numpy as np

import envs_jax
from espark_jax.ippo import PPOConfig, TrainConfig, make
from espark_jax.ippo.jax_source import JaxSource
from espark_jax.ippo.trainer import Trainer
from espark_jax.masks.builtin import get_builtin_mask

MASKS = ("upbound", "ss-pruning")
PPO = PPOConfig(update_epochs=2, num_minibatches=2)


def test_resets_outside_the_rollout_equal_resets_inside_bitwise():
    """MABIM episodes end together at the rollout's last step, so the trainer resets them in a
    program compiled once per run; that must change nothing against the in-scan reset."""
    env = envs_jax.make("mabim/tiny")
    fns = [get_builtin_mask(n, env.spec) for n in MASKS]
    cfg = TrainConfig(num_envs=2, hidden=(16, 16), ppo=PPO)
    outside = make(env, cfg, fns)
    assert outside.source.reset_at_end
    inside = Trainer(JaxSource(env, 0, fixed_episodes=False), outside.config, fns)
    assert not inside.source.reset_at_end
    runs = []
    for trainer in (outside, inside):
        state, metrics = trainer.train_chunk(trainer.init(jax.random.PRNGKey(3)), 2)
        state, more = trainer.train_chunk(state, 1)
        runs.append((jax.device_get(state), jax.device_get({**metrics, **more})))
    (s1, m1), (s2, m2) = runs
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(a, b, equal_nan=True), s1, s2)
    assert all(jax.tree_util.tree_leaves(same))
    assert all(np.array_equal(m1[k], m2[k], equal_nan=True) for k in m1)
    assert int(s1.envs.state.t.max()) == 0  # every environment was reset after its episode
