"""Run-time guards for mask functions, and small helpers to apply them.

A mask function maps ONE environment's context to ``[*agent_shape, n_actions]`` 0/1 values. The
trainer applies it under ``jax.vmap`` over environments; :func:`safe_mask` makes its output a
boolean mask in which every agent keeps at least one allowed action (the paper's fallback: an
agent with nothing allowed is unmasked).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from envs_jax.core import MaskContext

#: ``fn(ctx, action_space) -> mask [*agent_shape, n_actions]``.
MaskFn = Callable[[MaskContext, jax.Array], jax.Array]


def fix_empty_rows(mask: jax.Array) -> jax.Array:
    """Cast to bool and make rows (last axis) with no allowed action all-allowed."""
    m = jnp.asarray(mask).astype(bool)
    return m | ~jnp.any(m, axis=-1, keepdims=True)


def safe_mask(fn: MaskFn) -> MaskFn:
    """Wrap a mask function so its output is bool and no agent is left without an allowed action."""

    @functools.wraps(fn)
    def wrapped(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return fix_empty_rows(fn(ctx, action_space))

    wrapped.is_safe_mask = True  # type: ignore[attr-defined]
    return wrapped


def allow_all(agent_shape: tuple[int, ...], n_actions: int) -> MaskFn:
    """The all-ones mask function (plain IPPO; the fallback for a slot whose code failed)."""
    shape = (*agent_shape, n_actions)

    def compute_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return jnp.ones(shape, dtype=bool)

    return compute_mask


def apply_mask_fn(
    fn: MaskFn, ctx: MaskContext, action_space: Any, batch_dims: int = 0
) -> jax.Array:
    """Apply a mask function to a context with ``batch_dims`` leading batch axes on every field.

    ``action_space`` is shared by all environments. Returns ``[*batch, *agent_shape, n_actions]``.
    """
    g: Callable[..., jax.Array] = fn
    for _ in range(batch_dims):
        g = jax.vmap(g, in_axes=(0, None))
    return g(ctx, jnp.asarray(action_space))
