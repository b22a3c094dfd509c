"""``kmap``: vectorise a one-learner function over the learner axis K.

It is ``jax.vmap`` for K > 1. For K = 1 it squeezes the axis, runs the function unbatched and
adds the axis back: on CPU, XLA lowers a dot with a size-1 batch dimension differently from both
a plain dot and a batched one (its summation order differs in the last bit), while slice k of a
batched dot equals the plain dot. With ``kmap`` a one-learner run is therefore bitwise identical
to slot k of a K-learner run with the same keys.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp


def kmap(fn: Callable, in_axes: int | None | Sequence[int | None] = 0) -> Callable:
    """Like ``jax.vmap(fn, in_axes)`` over a leading axis (0 or None per positional argument)."""

    def wrapped(*args: Any) -> Any:
        axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if any(a not in (0, None) for a in axes):
            raise ValueError("kmap supports in_axes of 0 (mapped) or None (shared) only")
        sizes = {
            x.shape[0]
            for a, arg in zip(axes, args)
            if a == 0
            for x in jax.tree_util.tree_leaves(arg)
        }
        if len(sizes) != 1:
            raise ValueError(
                f"kmap: mapped arguments disagree on the learner axis size: {sorted(sizes)}"
            )
        if sizes.pop() != 1:
            return jax.vmap(fn, in_axes=axes)(*args)
        squeezed = [
            jax.tree_util.tree_map(lambda x: x[0], arg) if a == 0 else arg
            for a, arg in zip(axes, args)
        ]
        return jax.tree_util.tree_map(lambda x: jnp.expand_dims(x, 0), fn(*squeezed))

    return wrapped


def invariant_sum(x: jax.Array, axis: int | None = None) -> jax.Array:
    """Sum over ``axis`` (default: all elements) in a fixed pairwise order, elementwise adds only.

    XLA's CPU reductions may sum in a different order under ``vmap`` than unbatched (it depends
    on shapes); elementwise adds do not. Used for per-learner statistics so that a K-learner run
    equals K one-learner runs bit for bit. Cost: ``log2(size)`` elementwise passes over halving
    arrays.
    """
    x = x.reshape(-1) if axis is None else jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    size = 1 << max(n - 1, 0).bit_length()
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - n)])
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def invariant_mean(x: jax.Array) -> jax.Array:
    """Mean of all elements of ``x`` via :func:`invariant_sum`."""
    return invariant_sum(x) * (1.0 / x.size)
