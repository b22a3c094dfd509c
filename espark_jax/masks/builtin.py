"""Built-in mask functions: plain IPPO and the paper's pruning baselines.

Every mask function has the same signature as an LLM-written one::

    mask = fn(ctx, action_space)   # ctx: MaskContext of ONE environment; action_space: [A]
                                   # mask: [*agent_shape, A], 0/1 (bool here)

Randomness: the rollout adds a PRNG key to every context as ``ctx.key`` (a raw ``uint32[2]``
key, different for every learner, environment and step; see
:data:`espark_jax.ippo.rollout.RNG_FIELD`). Masks that need random numbers (``random``) read it;
deterministic masks ignore it. LLM-written masks cannot read it (it is not a documented field).

Names (see :func:`get_builtin_mask`):

- ``none``: all actions allowed (plain IPPO).
- ``random``: each action masked independently with probability ``p`` (default 0.3), redrawn
  every step.
- ``ss-pruning``: (S, s) pruning. With ``x = (in_stock + in_transit) / (demand_mean + 1e-4)``,
  the inventory position in days of mean demand: when ``x < s`` allow the multipliers within
  ``[0.5, 2] x (S - x)`` (plus the one nearest to ``S - x``, so the window is never empty),
  otherwise allow only "order nothing" (multiplier 0). Defaults ``S = 6``, ``s = 3`` days.
- ``upbound``: allow only multipliers ``<= upper`` (default 3.0 days of mean demand).
- ``maxpressure-pruning`` (SUMO): the 4 available phases with the highest pressure
  (:func:`espark_jax.masks.sumo_pruning.maxpressure_pruning`).
- ``random-pruning`` (SUMO): each available phase masked with probability 0.3, redrawn every step
  (:func:`espark_jax.masks.sumo_pruning.random_pruning`).

``ss-pruning`` and ``upbound`` read MABIM fields (``in_stock``, ``in_transit``, ``demand_mean``);
the two SUMO masks read SUMO fields and reject other scenarios.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from envs_jax.core import EnvSpec, MaskContext
from espark_jax.masks import sumo_pruning
from espark_jax.masks.safe import MaskFn, all_ones


def random_pruning(spec: EnvSpec, p: float = 0.3) -> MaskFn:
    """Each action masked independently with probability ``p``, redrawn each step (``ctx.key``)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"random pruning needs 0 <= p < 1, got p={p}")
    shape = tuple(spec.agent_shape) + (spec.n_actions,)

    def random_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return jax.random.bernoulli(ctx.key, 1.0 - p, shape)

    return random_mask


def ss_pruning(spec: EnvSpec, S: float = 6.0, s: float = 3.0) -> MaskFn:
    """(S, s) pruning: order about ``S - x`` days of demand when below ``s`` days, else nothing.

    ``S`` and ``s`` are in days of ``demand_mean`` (the 21-day mean demand); see the module doc.
    """
    if not 0.0 <= s <= S:
        raise ValueError(f"(S, s) pruning needs 0 <= s <= S, got S={S}, s={s}")
    missing = sorted(
        {"in_stock", "in_transit", "demand_mean"} - {f.name for f in spec.context_fields}
    )
    if missing:
        raise ValueError(
            f"ss-pruning reads MABIM inventory fields; {spec.name} has no {', '.join(missing)}"
        )

    def ss_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        position = (ctx.in_stock + ctx.in_transit) / (ctx.demand_mean + 1e-4)  # [W, N] days
        gap = (S - position)[..., None]  # days to order up to S
        a = action_space.astype(position.dtype)
        in_window = (a >= 0.5 * gap) & (a <= 2.0 * gap)
        nearest = jnp.argmin(jnp.abs(a - gap), axis=-1)
        is_nearest = jnp.arange(a.shape[0]) == nearest[..., None]
        reorder = in_window | is_nearest
        nothing = jnp.broadcast_to(a == 0.0, reorder.shape)
        return jnp.where((position < s)[..., None], reorder, nothing)

    return ss_mask


def upbound_pruning(spec: EnvSpec, upper: float = 3.0) -> MaskFn:
    """Mask every multiplier above ``upper`` (days of mean demand)."""
    shape = tuple(spec.agent_shape) + (spec.n_actions,)

    def upbound_mask(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
        return jnp.broadcast_to(action_space <= upper, shape)

    return upbound_mask


_BUILTIN: dict[str, Callable[..., MaskFn]] = {
    "none": all_ones,
    "random": random_pruning,
    "ss-pruning": ss_pruning,
    "upbound": upbound_pruning,
    "maxpressure-pruning": sumo_pruning.maxpressure_pruning,
    "random-pruning": sumo_pruning.random_pruning,
}


def register_builtin_mask(name: str, factory: Callable[..., MaskFn]) -> None:
    """Register ``factory(spec, **kwargs) -> MaskFn`` as the built-in mask ``name``."""
    _BUILTIN[name] = factory


def builtin_mask_names() -> list[str]:
    """Names accepted by :func:`get_builtin_mask`, sorted."""
    return sorted(_BUILTIN)


def get_builtin_mask(name: str, spec: EnvSpec, **kwargs: Any) -> MaskFn:
    """The built-in mask ``name`` for the scenario ``spec``; ``kwargs`` override its defaults.

    Raises:
        ValueError: for an unknown name (listing the valid ones).
    """
    if name not in _BUILTIN:
        close = difflib.get_close_matches(name, _BUILTIN, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown mask {name!r}.{hint} Valid masks: {', '.join(sorted(_BUILTIN))}")
    fn = _BUILTIN[name](spec, **kwargs)
    fn.mask_name = name  # type: ignore[attr-defined]
    return fn
