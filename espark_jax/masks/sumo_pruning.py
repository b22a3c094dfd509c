"""The paper's traffic pruning baselines as ordinary mask functions (same interface as LLM code).

Each factory takes the scenario's :class:`~envs_jax.core.EnvSpec` and returns
``fn(ctx, action_space) -> bool [I, 8]`` for ONE simulation, written in jax.numpy so it vmaps
and jits like an LLM-written mask:

* :func:`maxpressure_pruning`: allow the ``k`` (default 4) available phases with the highest
  ``ctx.phase_pressure`` (ties: lower phase index first); unavailable phases are never allowed.
* :func:`random_pruning`: mask each available phase independently with probability ``p``
  (default 0.3), redrawn every step from ``ctx.key`` (the rollout adds that key; see
  :mod:`espark_jax.masks.builtin`); if every available phase of an intersection was drawn,
  all its available phases stay allowed, so a row is never empty.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from envs_jax.core import EnvSpec, MaskContext
from espark_jax.masks.safe import MaskFn, fallback_empty_rows


def _check_sumo(spec: EnvSpec) -> None:
    if spec.is_jax or len(spec.agent_shape) != 1:
        raise ValueError(
            f"{spec.name} is not a SUMO scenario; these pruning masks need a sumo/... scenario"
        )


def maxpressure_pruning(spec: EnvSpec, k: int = 4) -> MaskFn:
    """Top-``k`` available phases by pressure (MaxPressure pruning)."""
    _check_sumo(spec)
    if not 1 <= k <= spec.n_actions:
        raise ValueError(f"MaxPressure pruning needs 1 <= k <= {spec.n_actions}, got k={k}")

    def maxpressure_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        avail = ctx.phase_avail.astype(bool)
        score = jnp.where(avail, ctx.phase_pressure, -jnp.inf)
        order = jnp.argsort(-score, axis=-1, stable=True)  # best first, lower index on ties
        rank = jnp.argsort(order, axis=-1, stable=True)
        return avail & (rank < k)

    return maxpressure_mask


def random_pruning(spec: EnvSpec, p: float = 0.3) -> MaskFn:
    """Each available phase masked with probability ``p`` (redrawn every step from ``ctx.key``)."""
    _check_sumo(spec)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"random pruning needs 0 <= p < 1, got p={p}")

    def random_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        avail = ctx.phase_avail.astype(bool)
        keep = avail & jax.random.bernoulli(ctx.key, 1.0 - p, avail.shape)
        return fallback_empty_rows(keep, avail)

    return random_mask
