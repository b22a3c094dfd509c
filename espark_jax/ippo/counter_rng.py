"""A counter-based random number generator for action sampling, cheap to compile and to run.

Sampling an action for every agent of ``K x E`` environments at every step needs one uniform
number per (agent, action). ``jax.random`` draws them with threefry, whose batched (``vmap``
over the K learner keys) form is one of the most expensive parts of the rollout to compile.
Here a uniform is the murmur3 finaliser of (element index, key) applied twice: a few integer
multiplies and shifts per element, identical under ``vmap`` and without (so K learners still
match K separate ones bit for bit), statistically sound for sampling but not cryptographic.
The key is a raw ``uint32[2]`` key as :func:`jax.random.split` makes them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_GOLDEN = 0x9E3779B9


def _fmix32(x: jax.Array) -> jax.Array:
    """The murmur3 32-bit finaliser (a bijection on uint32 with full avalanche)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform float32 numbers in the open interval (0, 1), of ``shape``, from ``key``."""
    key = jnp.asarray(key, jnp.uint32).reshape(-1)
    count = jax.lax.iota(jnp.uint32, max(1, math.prod(shape))).reshape(shape)
    bits = _fmix32(_fmix32(count * jnp.uint32(_GOLDEN) + key[0]) ^ key[1])
    return ((bits >> 8).astype(jnp.float32) + 0.5) * (1.0 / (1 << 24))


def gumbel(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard Gumbel noise of ``shape`` (``-log(-log(u))``), for the Gumbel-max trick."""
    return -jnp.log(-jnp.log(uniform(key, shape)))
