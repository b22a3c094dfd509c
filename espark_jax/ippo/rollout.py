"""Rollouts of K learners x E environments, each learner under its own mask function.

Layout: learner-level arrays carry a leading ``K`` axis, environment-level arrays ``[K, E, ...]``,
agent-level arrays ``[K, E, n_agents, ...]``. One step of the rollout:

1. mask contexts of all ``K x E`` environments (``env.mask_context`` vmapped twice), each with a
   PRNG key added as ``ctx.key`` (:data:`RNG_FIELD`) for masks that need randomness;
2. masks: the K mask functions are applied each to its own slice ``ctx[k]`` (vmapped over E) in
   a static Python loop and stacked at trace time (when all K functions are the same object, one
   function is vmapped over ``K x E`` instead);
3. the policy (:func:`policy_step`, vmapped over K) samples actions under the masks;
4. the environments step (vmapped over ``K x E``); finished environments are reset (auto-reset
   inside a ``lax.cond`` on "any environment done", so synchronised fixed-length episodes pay for
   a reset only at episode ends).

The whole step runs in a ``lax.scan`` over time; the transitions, masks included, are the buffer
the PPO update reads, so the update never depends on the mask functions.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from envs_jax.core import MaskContext
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import invariant_sum, kmap
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
class EnvBatch:
    """Environment-side carry of K learners: states ``[K, E]`` and episode bookkeeping."""

    state: Any  # env state pytree, leaves [K, E, ...]
    obs: jax.Array  # [K, E, n_agents, obs_dim]
    episode_return: jax.Array  # [K, E] running (unscaled) return of the current episode


@flax.struct.dataclass
class RolloutStats:
    """Per-learner statistics of one rollout (all ``[K]``)."""

    mean_episode_return: (
        jax.Array
    )  # mean (unscaled) return of the episodes finished in it; NaN if none
    episodes: jax.Array  # number of episodes finished in it (int32)
    allowed_fraction: jax.Array  # mean fraction of actions the masks allowed (after fallback)


def _vmap2(fn: Callable, in_axes: tuple) -> Callable:
    """Map over E then K with the same ``in_axes`` (0 for batched, None for shared)."""
    return kmap(jax.vmap(fn, in_axes=in_axes), in_axes=in_axes)


def apply_masks(
    mask_fns: Sequence[MaskFn],
    ctx: MaskContext,
    keys: jax.Array,
    action_space: jax.Array,
    agent_shape: tuple[int, ...],
) -> jax.Array:
    """Masks of K learners x E environments, ``[K, E, n_agents, A]`` bool.

    Args:
        mask_fns: K functions ``f(ctx, action_space) -> [*agent_shape, A]`` (one environment).
        ctx: mask contexts with leaves ``[K, E, ...]``.
        keys: ``[K, E, 2]`` PRNG keys added to the contexts as ``ctx.key``.
        action_space: ``[A]`` numeric action values.
        agent_shape: the environment's agent axes (``spec.agent_shape``).
    """
    n_actions = action_space.shape[0]
    target = tuple(agent_shape) + (n_actions,)
    ctx = ctx.replace(**{RNG_FIELD: keys})

    def one(fn: MaskFn) -> Callable:
        def run(c: MaskContext) -> jax.Array:
            out = jnp.asarray(fn(c, action_space))
            try:
                out = jnp.broadcast_to(out, target)
            except ValueError:
                name = getattr(fn, "mask_name", getattr(fn, "__name__", "mask function"))
                raise ValueError(
                    f"{name} returned shape {out.shape}; it must return [*agent_shape, A] = {target}"
                ) from None
            return (out != 0).reshape(-1, n_actions)

        return run

    if all(fn is mask_fns[0] for fn in mask_fns):
        return kmap(jax.vmap(one(mask_fns[0])))(ctx)
    per_k = [
        jax.vmap(one(fn))(jax.tree_util.tree_map(lambda x, k=k: x[k], ctx))
        for k, fn in enumerate(mask_fns)
    ]
    return jnp.stack(per_k)


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


def reset_envs(env: Any, keys: jax.Array, env_params: Any) -> EnvBatch:
    """Reset ``K x E`` environments (``keys [K, E, 2]``)."""
    obs, state = _vmap2(env.reset, (0, None))(keys, env_params)
    return EnvBatch(state=state, obs=obs, episode_return=jnp.zeros(keys.shape[:2], jnp.float32))


def _strong(tree: Any) -> Any:
    """Drop weak types (a mask built from Python scalars can be weakly typed), so the buffer's
    types, and hence the PPO update's trace, never depend on how a mask function was written."""
    return jax.tree_util.tree_map(
        lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree
    )


def make_rollout(
    env: Any,
    apply_fn: Callable,
    mask_fns: Sequence[MaskFn],
    num_steps: int,
    reward_scale: float,
    on_trace: Callable[[], None] | None = None,
) -> Callable:
    """Build ``rollout(params, envs, key, env_params) -> (envs, traj, last_value, stats)``.

    ``params`` has a leading K axis (K = ``len(mask_fns)``), ``envs`` is an :class:`EnvBatch`,
    ``key`` is ``[K, 2]``. ``traj`` is a :class:`Transition` with leaves ``[T, K, E, ...]``,
    ``last_value`` is ``[K, E, n_agents]`` (the value of the observation after the last step, for
    bootstrapping), ``stats`` a :class:`RolloutStats`. The function is pure; jit it.
    """
    spec = env.spec
    mask_fns = tuple(mask_fns)
    action_space = jnp.asarray(spec.action_values, jnp.float32)

    def rollout(params, envs: EnvBatch, key: jax.Array, env_params: Any):
        if on_trace is not None:
            on_trace()
        n_envs = envs.episode_return.shape[1]

        def step(carry, step_keys):
            envs, ret_sum, n_eps, n_allowed = carry
            k_act = step_keys[:, 0]  # [K, 2]
            mask_keys, env_keys, reset_keys = (
                step_keys[:, 1 + i * n_envs : 1 + (i + 1) * n_envs] for i in range(3)
            )
            ctx = _vmap2(env.mask_context, (0, None))(envs.state, env_params)
            masks = apply_masks(mask_fns, ctx, mask_keys, action_space, spec.agent_shape)
            action, log_prob, value = policy_step(apply_fn, params, envs.obs, masks, k_act)
            obs, state, reward, done, _ = _vmap2(env.step, (0, 0, 0, None))(
                env_keys, envs.state, action, env_params
            )
            done = jnp.asarray(done, bool)
            ep_ret = envs.episode_return + invariant_sum(reward, axis=-1)
            ret_sum = ret_sum + jnp.where(done, ep_ret, 0.0)  # [K, E]; reduced once at the end
            n_eps = n_eps + done
            n_allowed = n_allowed + jnp.sum(
                fallback_empty_rows(masks), axis=(1, 2, 3), dtype=jnp.int32
            )

            def do_reset(_):
                fresh = reset_envs(env, reset_keys, env_params)
                pick = lambda new, old: jnp.where(
                    done.reshape(done.shape + (1,) * (old.ndim - 2)), new, old
                )
                return jax.tree_util.tree_map(pick, fresh.state, state), pick(fresh.obs, obs)

            state, obs = jax.lax.cond(jnp.any(done), do_reset, lambda _: (state, obs), None)
            trans = _strong(
                Transition(
                    obs=envs.obs,
                    action=action,
                    log_prob=log_prob,
                    value=value,
                    reward=reward * reward_scale,
                    done=done,
                    mask=masks,
                )
            )
            new_envs = EnvBatch(state=state, obs=obs, episode_return=jnp.where(done, 0.0, ep_ret))
            return (new_envs, ret_sum, n_eps, n_allowed), trans

        n_k = key.shape[0]
        # every key of the rollout from one batched split (one threefry in the program: cheaper to
        # compile than splitting inside the loop): per step one action key and E mask, step and
        # reset keys per learner
        per_step = 1 + 3 * n_envs
        keys = jax.vmap(
            lambda k: jax.random.split(k, num_steps * per_step).reshape(num_steps, per_step, -1)
        )(key)
        keys = jnp.moveaxis(keys, 1, 0)  # [T, K, 1 + 3E, 2]
        init = (
            envs,
            jnp.zeros((n_k, n_envs), jnp.float32),
            jnp.zeros((n_k, n_envs), jnp.int32),
            jnp.zeros((n_k,), jnp.int32),
        )
        (envs, ret_sum, n_eps, n_allowed), traj = jax.lax.scan(step, init, keys)
        _, last_value = kmap(apply_fn)(params, envs.obs)
        episodes = jnp.sum(n_eps, axis=1)
        mean_return = kmap(invariant_sum)(ret_sum) * (
            1.0 / jnp.maximum(episodes, 1).astype(jnp.float32)
        )
        total = num_steps * n_envs * spec.n_agents * spec.n_actions
        stats = RolloutStats(
            mean_episode_return=jnp.where(episodes > 0, mean_return, jnp.nan),
            episodes=episodes,
            allowed_fraction=n_allowed.astype(jnp.float32) * (1.0 / total),
        )
        return envs, traj, last_value, stats

    return rollout
