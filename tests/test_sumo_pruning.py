"""MaxPressure and random pruning as jnp mask functions over the SUMO mask context."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs_jax.core import EnvSpec, MaskContext
from envs_jax.sumo.features import MASK_CONTEXT_FIELDS
from envs_jax.sumo.standardize import PHASE_NAMES
from espark_jax.masks.sumo_pruning import maxpressure_pruning, random_pruning

pytestmark = pytest.mark.sumo
N = 3


def _spec(is_jax: bool = False) -> EnvSpec:
    return EnvSpec(
        name="sumo/test",
        n_agents=N,
        obs_dim=72,
        n_actions=8,
        agent_shape=(N,),
        action_values=tuple(float(i) for i in range(8)),
        action_names=PHASE_NAMES,
        reward_components=("stopped",),
        group_names=("intersections",),
        agent_group=np.zeros(N, np.int32),
        episode_length={"train": 240},
        context_fields=MASK_CONTEXT_FIELDS,
        dims={"I": N, "P": 8, "M": 8},
        is_jax=is_jax,
    )


def _ctx(pressure: np.ndarray, avail: np.ndarray, key: jax.Array | None = None) -> MaskContext:
    fields = {
        "phase_pressure": jnp.asarray(pressure, jnp.float32),
        "phase_avail": jnp.asarray(avail),
    }
    if key is not None:
        fields["key"] = key
    return MaskContext(fields)


PRESSURE = np.array(
    [
        [5.0, 1.0, 7.0, 2.0, 9.0, 0.0, 3.0, 4.0],  # all available: top-4 = 4, 2, 0, 7
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # ties: the four lowest indices
        [0.0, 9.0, 0.0, 9.0, -2.0, 8.0, -1.0, 0.0],  # only 0, 4, 6 available: all three
    ]
)
AVAIL = np.ones((N, 8), dtype=bool)
AVAIL[2] = [True, False, False, False, True, False, True, False]
ACTIONS = jnp.arange(8, dtype=jnp.float32)


def test_maxpressure_pruning_keeps_top4_available():
    fn = maxpressure_pruning(_spec())
    mask = np.asarray(fn(_ctx(PRESSURE, AVAIL), ACTIONS))
    assert mask.dtype == bool and mask.shape == (N, 8)
    assert np.flatnonzero(mask[0]).tolist() == [0, 2, 4, 7]
    assert np.flatnonzero(mask[1]).tolist() == [0, 1, 2, 3]
    assert np.flatnonzero(mask[2]).tolist() == [0, 4, 6]
    batched = jax.jit(jax.vmap(fn, in_axes=(0, None)))(
        _ctx(np.stack([PRESSURE] * 2), np.stack([AVAIL] * 2)), ACTIONS
    )
    assert np.array_equal(np.asarray(batched[1]), mask)
    assert np.flatnonzero(
        np.asarray(maxpressure_pruning(_spec(), k=1)(_ctx(PRESSURE, AVAIL), ACTIONS))[0]
    ).tolist() == [4]


def test_random_pruning_masks_available_phases_with_probability_p():
    fn = random_pruning(_spec(), p=0.3)
    n = 1000
    keys = jnp.asarray(
        np.stack([np.zeros(n), np.arange(n)], axis=1), jnp.uint32
    )  # raw keys, like ctx.key
    ctxs = MaskContext(
        {
            "phase_pressure": jnp.zeros((n, N, 8)),
            "phase_avail": jnp.broadcast_to(AVAIL, (n, N, 8)),
            "key": keys,
        }
    )
    masks = np.asarray(jax.jit(jax.vmap(fn, in_axes=(0, None)))(ctxs, ACTIONS))
    assert not masks[:, ~AVAIL].any(), "an unavailable phase was allowed"
    assert masks.any(-1).all(), "an intersection was left without any phase"
    dropped = 1.0 - masks[:, :2, :].mean()  # rows 0 and 1: all 8 available, an empty row is rare
    assert dropped == pytest.approx(0.3, abs=0.02)
    keep_all = random_pruning(_spec(), p=0.0)(_ctx(PRESSURE, AVAIL, keys[0]), ACTIONS)
    assert np.array_equal(np.asarray(keep_all), AVAIL)


def test_pruning_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not a SUMO scenario"):
        maxpressure_pruning(_spec(is_jax=True))
    with pytest.raises(ValueError, match="k <= 8"):
        maxpressure_pruning(_spec(), k=9)
    with pytest.raises(ValueError, match="0 <= p < 1"):
        random_pruning(_spec(), p=1.0)
