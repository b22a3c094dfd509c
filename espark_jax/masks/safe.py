"""What every mask function shares: its type, the all-ones mask and the one empty-row fallback.

A mask function maps ONE environment's context to ``[*agent_shape, n_actions]`` 0/1 values. The
trainer applies it under ``jax.vmap`` over environments, except a function marked
``batched = True`` (an exported, checked LLM mask), which it calls once on the batched contexts.
Wherever a mask leaves an agent with no allowed action, :func:`fallback_empty_rows` gives that
agent its fallback row (all actions, or the environment's available actions): the paper's rule
that such an agent is unmasked.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from envs_jax.core import EnvSpec, MaskContext

#: ``fn(ctx, action_space) -> mask [*agent_shape, n_actions]`` (0/1 or bool).
MaskFn = Callable[[MaskContext, jax.Array], jax.Array]


def fallback_empty_rows(mask: jax.Array, fallback: jax.Array | None = None) -> jax.Array:
    """``mask`` as bool, with every row (last axis) that allows nothing replaced by ``fallback``.

    Args:
        mask: ``[..., A]`` bool or 0/1 numbers.
        fallback: ``[..., A]`` bool rows to use instead (broadcast against ``mask``); ``None``
            means all actions allowed.

    Returns:
        ``[..., A]`` bool; a row is empty only where its fallback row is.
    """
    mask = jnp.asarray(mask) != 0
    has_any = jnp.any(mask, axis=-1, keepdims=True)
    if fallback is None:
        return mask | ~has_any
    return jnp.where(has_any, mask, jnp.asarray(fallback, bool))


def safe_mask(fn: MaskFn) -> MaskFn:
    """Wrap a mask function so its output is bool and no agent is left without an allowed action."""

    @functools.wraps(fn)
    def wrapped(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return fallback_empty_rows(fn(ctx, action_space))

    wrapped.is_safe_mask = True  # type: ignore[attr-defined]
    return wrapped


def all_ones(spec: EnvSpec) -> MaskFn:
    """Everything allowed: training under it is plain IPPO (and the fallback of a failed slot)."""
    shape = (*spec.agent_shape, spec.n_actions)

    def none_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return jnp.ones(shape, bool)

    none_mask.mask_name = "none"  # type: ignore[attr-defined]
    return none_mask


def apply_mask_fn(
    fn: MaskFn, ctx: MaskContext, action_space: Any, batch_dims: int = 0
) -> jax.Array:
    """Apply a mask function to a context with ``batch_dims`` leading batch axes on every field.

    ``action_space`` is shared by all environments. Returns ``[*batch, *agent_shape, n_actions]``.
    A function with ``batched = True`` (an exported mask) takes the batched context as it is.
    """
    if getattr(fn, "batched", False):
        return fn(ctx, jnp.asarray(action_space))
    g: Callable[..., jax.Array] = fn
    for _ in range(batch_dims):
        g = jax.vmap(g, in_axes=(0, None))
    return g(ctx, jnp.asarray(action_space))
