"""Which fallback rule a mask obeys when it leaves an agent nothing to do, and when masks start.

Two rules for a mask that allows no action to some agent:

* ``per_agent`` (ours, the paper's text): only that agent acts unmasked; every other agent keeps
  its mask. This is :func:`~espark_jax.masks.safe.fallback_empty_rows`, which the policy applies
  to every mask anyway, so a mask under this rule is used as it is.
* ``per_env`` (the authors' released code, ``runners/gpt_parallel_runner_whole_iter.py``,
  ``env_worker``): when any agent of an environment has an empty row, the whole mask of that
  environment is discarded for that step and every agent of it acts unmasked.

And one rule for the first decision of an episode: the released runner computes a mask only
after an environment step, so the first decision after a reset is unmasked there
(``mask_first_step=False``); ours masks it like every other (``True``).

:func:`with_fallback` wraps a mask function so it obeys the chosen rules; the result is again a
:data:`~espark_jax.masks.safe.MaskFn` with the same calling convention (per environment, or
``batched`` on stacked contexts like an exported mask).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from envs_jax.core import MaskContext
from espark_jax.masks.safe import MaskFn
from espark_jax.presets import FALLBACK_RULES

#: The context field the first-step rule reads: decisions already taken in the episode.
DAY_FIELD = "day"


def check_fallback(rule: str, mask_first_step: bool, context_fields: tuple[str, ...]) -> None:
    """Raise a one-line ``ValueError`` naming the fix for a rule this environment cannot obey."""
    if rule not in FALLBACK_RULES:
        raise ValueError(
            f"unknown mask fallback {rule!r}; use --mask-fallback per_agent or per_env"
        )
    if not mask_first_step and DAY_FIELD not in context_fields:
        raise ValueError(
            f"--no-mask-first-step needs a {DAY_FIELD!r} context field, which this environment "
            "lacks; leave the first step masked"
        )


def per_env_fallback(mask: jax.Array, agent_ndim: int) -> jax.Array:
    """``mask [*batch, *agents, A]`` as bool, all ones in every environment (batch element) in
    which some agent's row allows nothing: the released code's rule."""
    mask = jnp.asarray(mask) != 0
    empty = ~jnp.any(mask, axis=-1)  # [*batch, *agents]
    axes = tuple(range(empty.ndim - agent_ndim, empty.ndim))
    drop = jnp.any(empty, axis=axes)  # [*batch]
    return mask | drop.reshape(drop.shape + (1,) * (agent_ndim + 1))


def unmask_first_step(mask: jax.Array, day: jax.Array, agent_ndim: int) -> jax.Array:
    """``mask`` with every environment whose ``day`` is 0 (its first decision) all ones."""
    first = jnp.asarray(day) == 0  # [*batch]
    return jnp.asarray(mask) | first.reshape(first.shape + (1,) * (agent_ndim + 1))


def with_fallback(
    fn: MaskFn, agent_ndim: int, rule: str = "per_agent", mask_first_step: bool = True
) -> MaskFn:
    """``fn`` obeying the fallback ``rule`` and the first-step rule (see the module doc).

    ``agent_ndim`` is ``len(spec.agent_shape)``. Under the defaults (ours) ``fn`` itself is
    returned. An exported mask is wrapped through its ``raw`` output (its call already fills
    empty rows per agent); the wrapper keeps ``batched`` and the artefact's ``data``.
    """
    if rule == "per_agent" and mask_first_step:
        return fn
    batched = bool(getattr(fn, "batched", False))
    # an exported mask fills empty rows per agent when called; the rule needs its raw output
    inner = getattr(fn, "raw", fn)

    def wrapped(ctx: MaskContext, action_space: Any) -> jax.Array:
        out = jnp.asarray(inner(ctx, action_space)) != 0
        if rule == "per_env":
            out = per_env_fallback(out, agent_ndim)
        if not mask_first_step:
            out = unmask_first_step(out, getattr(ctx, DAY_FIELD), agent_ndim)
        return out

    name = getattr(fn, "mask_name", getattr(fn, "__name__", "mask"))
    wrapped.__name__ = str(getattr(fn, "__name__", "mask"))
    wrapped.mask_name = f"{name} ({rule} fallback)"  # type: ignore[attr-defined]
    wrapped.batched = batched  # type: ignore[attr-defined]
    if hasattr(fn, "data"):
        wrapped.data = fn.data  # type: ignore[attr-defined]
    wrapped.fallback_rule = (rule, mask_first_step)  # type: ignore[attr-defined]
    return wrapped
