"""Sharding K learners and their environments over several (forced host) devices."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax

from espark_jax.ippo.sharding import make_mesh, mesh_shape

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import jax, jax.numpy as jnp, numpy as np
    from toy_env import ToyInventoryEnv
    from espark_jax.ippo.ppo import PPOConfig
    from espark_jax.ippo import TrainConfig, make
    from espark_jax.masks.builtin import get_builtin_mask

    assert len(jax.devices()) == 4, jax.devices()
    env = ToyInventoryEnv(n_warehouses=2, n_skus=3, episode_lengths=(6, 5, 5))
    masks = [get_builtin_mask("ss-pruning", env.spec), get_builtin_mask("upbound", env.spec)]
    results = {}
    for shard in (True, False):
        cfg = TrainConfig(
            num_envs=4,
            shard=shard,
            fuse_chunk=True,
            ppo=PPOConfig(update_epochs=2, num_minibatches=2),
        )
        trainer = make(env, cfg, masks)
        state = trainer.init(jax.random.PRNGKey(0))
        state, metrics = trainer.train_chunk(state, 2)
        results[shard] = (trainer, jax.device_get(state), state)
    sharded, plain = results[True], results[False]
    mesh = sharded[0].mesh
    assert dict(mesh.shape) == {"k": 2, "e": 2}, mesh.shape
    live = sharded[2]
    assert live.params["actor_0"]["kernel"].sharding.spec == jax.sharding.PartitionSpec("k")
    assert live.envs.obs.sharding.spec == jax.sharding.PartitionSpec("k", "e")
    assert len(live.envs.obs.sharding.device_set) == 4
    assert plain[0].mesh is None
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), sharded[1], plain[1]
    )

    # fused chunks (one program per chunk): new masks retrace the rollout, never the update
    trainer = sharded[0]
    trainer.set_masks([get_builtin_mask("random", env.spec), get_builtin_mask("none", env.spec)])
    state, _ = trainer.train_chunk(live, 1)
    assert trainer.config.fuse_chunk and trainer.trace_counts == {"rollout": 2, "update": 1}, (
        trainer.trace_counts
    )
    assert len(trainer.compile_seconds["chunk"]) == 2
    print("sharded ok")
""")


def test_two_learners_times_four_envs_on_four_devices_match_one_device():
    # optimisation level 0: this test is dominated by XLA compile time, not run time
    flags = "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    tests_dir = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, tests_dir],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout


def test_mesh_shapes():
    assert mesh_shape(16, 64, 1) == (1, 1)
    assert mesh_shape(16, 64, 8) == (8, 1)
    assert mesh_shape(2, 64, 8) == (2, 4)  # K < devices: environments take the rest
    assert mesh_shape(12, 10, 8) == (4, 2)
    assert mesh_shape(3, 6, 4) == (1, 2)  # gcd(3, 4) = 1, then E over 2 devices
    assert mesh_shape(3, 1, 4) == (1, 1)
    assert make_mesh(16, 64, jax.devices()[:1]) is None
