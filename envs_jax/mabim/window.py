"""Statistics of the MABIM lookback window (the last ``L`` days of demand and sales).

:func:`demand_mean` is the one expression for the mean demand: the environment's order
quantities (``floor(multiplier * demand_mean)``) and the mask context's ``demand_mean`` both call
it, so a mask that computes the order of an action sees exactly the quantity the environment
places, also under ``jit`` and ``vmap``. The other helpers compute and slide the window sums.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from envs_jax.mabim.params import MabimParams, MabimState


class WindowSums(NamedTuple):
    """Sums over the lookback window of the demand and sale histories and of their squares.

    Every field is ``[W, N]``.
    """

    demand: jax.Array
    demand_sq: jax.Array
    sale: jax.Array
    sale_sq: jax.Array


def window_sums(state: MabimState) -> WindowSums:
    """The window sums of a state, computed from its histories."""
    demand, demand_sq = sums_over(-1, state.demand_hist, state.demand_hist * state.demand_hist)
    sale, sale_sq = sums_over(-1, state.sale_hist, state.sale_hist * state.sale_hist)
    return WindowSums(demand, demand_sq, sale, sale_sq)


def demand_mean(sums: WindowSums, params: MabimParams) -> jax.Array:
    """Mean demand of the window ``[W, N]``: ``sums.demand / L`` as a true IEEE division.

    XLA rewrites a division by a constant or by a broadcast operand into a multiplication by its
    reciprocal, which rounds differently (by one ulp in many entries) and can move
    ``floor(multiplier * demand_mean)`` by one unit. The divisor is therefore a runtime array
    (``params.lookback``) made to depend on the sum (``+ 0 * total``; XLA does not fold
    ``x * 0`` for floats), so that under ``vmap`` with shared ``params`` it is a batched array and
    never a broadcast. In float64 this equals the original's ``np.average`` exactly.
    """
    total = sums.demand
    return total / (params.lookback + 0.0 * total)


def sums_over(axis: int, *xs: jax.Array) -> tuple[jax.Array, ...]:
    """Sums of same-shaped arrays over one axis as a single variadic reduction.

    On CPU one pass that sums several arrays is faster than separate sums, which XLA
    compiles into one (slow for short rows) kernel each.
    """
    zero = jnp.zeros((), xs[0].dtype)
    axis = axis % xs[0].ndim
    return tuple(jax.lax.reduce(xs, (zero,) * len(xs), _add_tuples, (axis,)))


def _add_tuples(a: tuple[jax.Array, ...], b: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    return tuple(u + v for u, v in zip(a, b))


def advance_window_sums(
    sums: WindowSums, before: MabimState, demand: jax.Array, sale: jax.Array
) -> WindowSums:
    """The window sums after pushing one day onto ``before``'s histories.

    ``demand`` and ``sale`` are the day's ``[W, N]``. Sliding the sums costs a few operations per
    agent instead of a pass over the histories; for integer quantities it is exact (float32 up to
    2**24), otherwise it differs from a fresh sum by rounding only (the sums feed features, never
    the dynamics).
    """
    d0, s0 = before.demand_hist[..., 0], before.sale_hist[..., 0]
    return WindowSums(
        sums.demand - d0 + demand,
        sums.demand_sq - d0 * d0 + demand * demand,
        sums.sale - s0 + sale,
        sums.sale_sq - s0 * s0 + sale * sale,
    )


def mean_std(total: jax.Array, total_sq: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Mean and population std from a window's sum and sum of squares.

    For features only: the mean is a multiplication by ``1 / n``, not the exact
    :func:`demand_mean`.
    """
    inv_n = 1.0 / n
    mean = total * inv_n
    var = jnp.maximum(total_sq * inv_n - mean * mean, 0.0)
    return mean, jnp.sqrt(var)
