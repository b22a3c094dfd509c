"""Masked categorical distribution: the paper's exploration policy pi_E.

Under a 0/1 action mask, the policy's probabilities are renormalised over the allowed actions.
Disallowed actions get the finite logit :data:`MASKED_LOGIT` (never ``-inf``, which would turn the
entropy and the KL into NaN through ``0 * inf``). An agent whose mask allows nothing falls back to
the unmasked policy, so every row always has at least one action with positive probability.

All functions work on arrays of any leading shape: ``logits`` is ``[..., A]``, ``mask`` is
``[..., A]`` (bool or 0/1; ``None`` means "everything allowed"), actions are ``[...]`` int32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from espark_jax.ippo import counter_rng
from espark_jax.masks.safe import fallback_empty_rows

MASKED_LOGIT = -1e9
"""Logit given to disallowed actions: ``exp`` of it underflows to exactly 0 in float32."""


def masked_logits(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Logits with disallowed actions set to :data:`MASKED_LOGIT` (after the all-zero fallback)."""
    if mask is None:
        return logits
    return jnp.where(fallback_empty_rows(mask), logits, jnp.asarray(MASKED_LOGIT, logits.dtype))


def log_probs(logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Log-probabilities of every action under the masked policy, ``[..., A]``."""
    return jax.nn.log_softmax(masked_logits(logits, mask), axis=-1)


def log_prob(logits: jax.Array, mask: jax.Array | None, action: jax.Array) -> jax.Array:
    """Log-probability of ``action`` (``[...]`` int) under the masked policy."""
    lp = log_probs(logits, mask)
    return jnp.take_along_axis(lp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def probs(logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Probabilities of the masked policy, ``[..., A]``; disallowed actions get exactly 0."""
    return jax.nn.softmax(masked_logits(logits, mask), axis=-1)


def entropy(logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Entropy of the masked policy, ``[...]`` (finite: masked actions add ``0 * finite``)."""
    lp = log_probs(logits, mask)
    return -jnp.sum(jnp.exp(lp) * lp, axis=-1)


def kl(logits_p: jax.Array, logits_q: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """KL(p || q) between two policies under the same mask, ``[...]``."""
    lp = log_probs(logits_p, mask)
    lq = log_probs(logits_q, mask)
    return jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)


def sample(key: jax.Array, logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Draw one action per row, ``[...]`` int32; never a disallowed action when any is allowed.

    The Gumbel-max trick with noise from :mod:`espark_jax.ippo.counter_rng` (``key``: a raw
    ``uint32[2]`` key)."""
    z = masked_logits(logits, mask)
    return jnp.argmax(z + counter_rng.gumbel(key, z.shape), axis=-1).astype(jnp.int32)


def mode(logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The most probable allowed action per row (greedy policy), ``[...]`` int32."""
    return jnp.argmax(masked_logits(logits, mask), axis=-1).astype(jnp.int32)
