"""What the rollouts of every source share: the buffer's transition, statistics, masks, policy.

Layout: learner-level arrays carry a leading ``K`` axis, environment-level arrays ``[K, E, ...]``,
agent-level arrays ``[K, E, n_agents, ...]``. :func:`apply_masks` applies the K mask functions,
each to its own learner's contexts (stacked at trace time; when all K are the same object, one
function is vmapped over ``K x E``), with a PRNG key added as ``ctx.key`` (:data:`RNG_FIELD`);
a function marked ``batched = True`` (an exported LLM mask) is called on the batched contexts;
:func:`policy_step` samples actions of K learners under their masks. The transitions, masks
included, are the buffer the PPO update reads, so the update never depends on the masks.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from envs_jax.core import MaskContext
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import kmap
from espark_jax.masks.safe import MaskFn, fallback_empty_rows

RNG_FIELD = "key"
"""Name of the PRNG key field the rollout adds to every mask context (raw ``uint32[2]`` key)."""


@flax.struct.dataclass
class Transition:
    """One time step of the rollout buffer (leading axes ``[T, K, E]`` when stacked)."""

    obs: jax.Array  # [..., n_agents, obs_dim] float32
    action: jax.Array  # [..., n_agents] int32
    log_prob: jax.Array  # [..., n_agents] behaviour log-probability (under the mask)
    value: jax.Array  # [..., n_agents]
    reward: jax.Array  # [..., n_agents] scaled reward
    done: jax.Array  # [...] bool: the episode ended with this transition
    mask: jax.Array  # [..., n_agents, n_actions] bool: the behaviour mask


@flax.struct.dataclass
class RolloutStats:
    """Per-learner statistics of one rollout (all ``[K]``)."""

    mean_episode_return: (
        jax.Array
    )  # mean (unscaled) return of the episodes finished in it; NaN if none
    episodes: jax.Array  # number of episodes finished in it (int32)
    allowed_fraction: jax.Array  # mean fraction of actions the masks allowed (after fallback)


def apply_masks(
    mask_fns: Sequence[MaskFn],
    ctx: MaskContext,
    keys: jax.Array,
    action_space: jax.Array,
    agent_shape: tuple[int, ...],
) -> jax.Array:
    """Masks of K learners x E environments, ``[K, E, n_agents, A]`` bool, every row that would
    allow nothing filled with all ones (:func:`~espark_jax.masks.safe.fallback_empty_rows`).

    Args:
        mask_fns: K functions ``f(ctx, action_space) -> [*agent_shape, A]`` (one environment;
            with ``batched = True``: ``[B, ...]`` contexts -> ``[B, *agent_shape, A]``).
        ctx: mask contexts with leaves ``[K, E, ...]``.
        keys: ``[K, E, 2]`` PRNG keys added to the contexts as ``ctx.key``.
        action_space: ``[A]`` numeric action values.
        agent_shape: the environment's agent axes (``spec.agent_shape``).
    """
    n_actions = action_space.shape[0]
    target = tuple(agent_shape) + (n_actions,)
    ctx = ctx.replace(**{RNG_FIELD: keys})

    def one(fn: MaskFn, lead: tuple[int, ...] = ()) -> Callable:
        # an exported mask's raw output: its empty rows are filled once, for all K, below
        call = getattr(fn, "raw", fn) if getattr(fn, "batched", False) else fn

        def run(c: MaskContext) -> jax.Array:
            out = jnp.asarray(call(c, action_space))
            try:
                out = jnp.broadcast_to(out, lead + target)
            except ValueError:
                name = getattr(fn, "mask_name", getattr(fn, "__name__", "mask function"))
                raise ValueError(
                    f"{name} returned shape {out.shape}; it must return "
                    f"[*agent_shape, A] = {target}"
                ) from None
            # a mask that ignores its context (all-ones, upbound) would be a constant that XLA
            # folds element by element at compile time, K x E x agents x A of them
            return jax.lax.optimization_barrier((out != 0).reshape(*lead, -1, n_actions))

        return run

    n_k, n_envs = jax.tree_util.tree_leaves(ctx)[0].shape[:2]

    def per_env(fn: MaskFn) -> Callable:  # [E, ...] contexts -> [E, n_agents, A]
        return one(fn, (n_envs,)) if getattr(fn, "batched", False) else jax.vmap(one(fn))

    first = mask_fns[0]
    if all(fn is first for fn in mask_fns):
        if not getattr(first, "batched", False):
            return fallback_empty_rows(kmap(jax.vmap(one(first)))(ctx))
        flat = jax.tree_util.tree_map(lambda x: x.reshape(n_k * n_envs, *x.shape[2:]), ctx)
        out = one(first, (n_k * n_envs,))(flat).reshape(n_k, n_envs, -1, n_actions)
        return fallback_empty_rows(out)
    per_k = [
        per_env(fn)(jax.tree_util.tree_map(lambda x, k=k: x[k], ctx))
        for k, fn in enumerate(mask_fns)
    ]
    # one fill of empty rows for all K (the policy fills them too; filling is idempotent)
    return fallback_empty_rows(jnp.stack(per_k))


def policy_step(
    apply_fn: Callable, params: Any, obs: jax.Array, mask: jax.Array | None, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sample actions of K learners under their masks.

    Args:
        apply_fn: ``apply_fn(params, obs) -> (logits, value)`` of one learner.
        params: parameters with a leading K axis.
        obs: ``[K, ..., obs_dim]`` observations (any batch axes after K, e.g. envs x agents).
        mask: ``[K, ..., A]`` behaviour masks, or ``None`` for unmasked.
        key: ``[K, 2]`` one key per learner.

    Returns:
        ``(action [K, ...] int32, log_prob [K, ...], value [K, ...])``.
    """

    def one(p, o, m, k):
        logits, value = apply_fn(p, o)
        action = dist.sample(k, logits, m)
        return action, dist.log_prob(logits, m, action), value

    return kmap(one)(params, obs, mask, key)
