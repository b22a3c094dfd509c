"""Built-in masks: plain IPPO and the pruning baselines, through the mask-function interface."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_env import ToyInventoryEnv

from envs_jax.core import MaskContext
from espark_jax.masks.builtin import builtin_mask_names, get_builtin_mask

ENV = ToyInventoryEnv(n_warehouses=1, n_skus=3)
SPEC = ENV.spec
ACTIONS = jnp.asarray(SPEC.action_values, jnp.float32)  # 0, .5, 1, 1.5, 2, 3, 5, 8


def ctx(in_stock, in_transit, demand_mean, key=0):
    return MaskContext(
        {
            "in_stock": jnp.asarray([in_stock], jnp.float32),
            "in_transit": jnp.asarray([in_transit], jnp.float32),
            "demand_mean": jnp.asarray([demand_mean], jnp.float32),
            "key": jax.random.PRNGKey(key),
        }
    )


def test_names_and_unknown_name_error():
    assert {"none", "random", "ss-pruning", "upbound"} <= set(builtin_mask_names())
    with pytest.raises(ValueError, match="Did you mean 'ss-pruning'"):
        get_builtin_mask("ss-prunning", SPEC)


def test_none_allows_everything():
    m = get_builtin_mask("none", SPEC)(ctx([0, 0, 0], [0, 0, 0], [1, 1, 1]), ACTIONS)
    assert m.shape == (1, 3, 8) and bool(m.all())


def test_ss_pruning_hand_case():
    # S = 6, s = 3 days.
    # SKU0: position (2+1)/10 = 0.3 days < s -> gap 5.7 -> allow [2.85, 11.4] -> 3, 5, 8
    # SKU1: position 40/10 = 4 days >= s -> only "order nothing"
    # SKU2: position 5.9 days >= s -> only "order nothing"
    c = ctx([2.0, 30.0, 59.0], [1.0, 10.0, 0.0], [10.0, 10.0, 10.0])
    m = np.asarray(get_builtin_mask("ss-pruning", SPEC)(c, ACTIONS))[0]
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(m[1], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(m[2], [1, 0, 0, 0, 0, 0, 0, 0])
    m2 = np.asarray(
        get_builtin_mask("ss-pruning", SPEC, S=2.0, s=1.0)(
            ctx([5.0, 0, 0], [0, 0, 0], [10.0] * 3), ACTIONS
        )
    )
    # position 0.5 days, gap 1.5 -> window [0.75, 3.0] -> 1, 1.5, 2, 3
    np.testing.assert_array_equal(m2[0, 0], [0, 0, 1, 1, 1, 1, 0, 0])
    # zero inventory, gap 2 -> window [1, 4] -> 1, 1.5, 2, 3
    np.testing.assert_array_equal(m2[0, 1], [0, 0, 1, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="0 <= s <= S"):
        get_builtin_mask("ss-pruning", SPEC, S=1.0, s=2.0)


def test_ss_pruning_window_never_empty():
    # gap 0.1 days: the window [0.05, 0.2] holds no multiplier, so the nearest one (0) is allowed
    m = np.asarray(
        get_builtin_mask("ss-pruning", SPEC, S=3.0, s=3.0)(
            ctx([29.0] * 3, [0.0] * 3, [10.0] * 3), ACTIONS
        )
    )
    np.testing.assert_array_equal(m[0, 0], [1, 0, 0, 0, 0, 0, 0, 0])
    m = np.asarray(
        get_builtin_mask("ss-pruning", SPEC, S=3.0, s=3.0)(
            ctx([27.0] * 3, [0.0] * 3, [10.0] * 3), ACTIONS
        )
    )
    np.testing.assert_array_equal(
        m[0, 0], [0, 1, 0, 0, 0, 0, 0, 0]
    )  # gap 0.3 -> nearest 0.5, window [.15, .6]


def test_upbound_masks_large_multipliers():
    m = np.asarray(
        get_builtin_mask("upbound", SPEC, upper=2.0)(ctx([0] * 3, [0] * 3, [1] * 3), ACTIONS)
    )
    np.testing.assert_array_equal(m[0, 1], [1, 1, 1, 1, 1, 0, 0, 0])
    assert m.shape == (1, 3, 8)


def test_random_masks_thirty_percent_and_redraws_per_key():
    fn = get_builtin_mask("random", SPEC)
    many = jax.vmap(lambda k: fn(MaskContext({"key": k}), ACTIONS))(
        jax.random.split(jax.random.PRNGKey(0), 4000)
    )
    assert abs(1.0 - float(many.mean()) - 0.3) < 0.01
    assert not bool(jnp.array_equal(many[0], many[1]))
    with pytest.raises(ValueError, match="0 <= p < 1"):
        get_builtin_mask("random", SPEC, p=1.0)
