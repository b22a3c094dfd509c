"""The actor-critic shared by all agents, and initialisation of K learners.

One network serves every agent (parameter sharing); an agent's identity (warehouse, SKU features)
comes in through its observation. Actor and critic have separate MLP torsos with orthogonal
initialisation as in PureJaxRL: gain sqrt(2) for hidden layers, 0.01 for the policy head, 1.0 for
the value head, zero biases.

:func:`init_params` draws the orthogonal matrices on the host with numpy (the same Haar
distribution as flax's ``orthogonal`` initialiser: QR of a Gaussian matrix, signs fixed by the
diagonal of R), seeded by the JAX key. K learners are initialised one after another in a Python
loop and stacked, never with ``jax.vmap(network.init)``: a vmapped orthogonal initialiser runs
batched QR decompositions in XLA that deadlocked its thread pool on 2-core CPUs (see
``shared/reference/jax-patterns.md``), and even unbatched, XLA's QR costs seconds of compile time
per layer shape on CPU.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

HIDDEN_GAIN = float(np.sqrt(2.0))
HEAD_GAINS = {"actor_head": 0.01, "critic_head": 1.0}
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs over per-agent observations.

    Attributes:
        n_actions: number of discrete actions.
        hidden: widths of the hidden layers (used for both torsos).
        activation: one of ``tanh``, ``relu``, ``gelu``, ``silu``.
    """

    n_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Map ``obs [..., obs_dim]`` to ``(logits [..., n_actions], value [...])``."""
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; use one of {sorted(_ACTIVATIONS)}"
            )
        act = _ACTIVATIONS[self.activation]
        hidden_init = nn.initializers.orthogonal(HIDDEN_GAIN)
        zeros = nn.initializers.zeros

        x = obs
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, kernel_init=hidden_init, bias_init=zeros, name=f"actor_{i}")(x))
        logits = nn.Dense(
            self.n_actions,
            kernel_init=nn.initializers.orthogonal(HEAD_GAINS["actor_head"]),
            bias_init=zeros,
            name="actor_head",
        )(x)

        v = obs
        for i, width in enumerate(self.hidden):
            v = act(
                nn.Dense(width, kernel_init=hidden_init, bias_init=zeros, name=f"critic_{i}")(v)
            )
        value = nn.Dense(
            1,
            kernel_init=nn.initializers.orthogonal(HEAD_GAINS["critic_head"]),
            bias_init=zeros,
            name="critic_head",
        )(v)
        return logits, value[..., 0]


def orthogonal_matrix(rng: np.random.Generator, shape: tuple[int, int], gain: float) -> np.ndarray:
    """A ``[fan_in, fan_out]`` matrix with orthonormal rows or columns, times ``gain``."""
    n_in, n_out = shape
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if n_in < n_out:
        q = q.T
    return (gain * q).astype(np.float32)


def _seed(key: jax.Array) -> np.ndarray:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key, dtype=np.uint32).ravel()


def param_shapes(network: nn.Module, obs_dim: int) -> dict:
    """Shapes and dtypes (``ShapeDtypeStruct``) of one learner's parameters, not computed
    (any network of this package: a recurrent one names its inputs with ``example_inputs``)."""
    if hasattr(network, "example_inputs"):
        inputs = network.example_inputs(obs_dim)
    else:
        inputs = (jax.ShapeDtypeStruct((1, obs_dim), jnp.float32),)
    init = lambda *xs: network.init(jax.random.PRNGKey(0), *xs)  # noqa: E731
    return jax.eval_shape(init, *inputs)["params"]


def _init_host(
    network: nn.Module, key: jax.Array, obs_dim: int, shapes: dict | None = None
) -> dict:
    shapes = shapes or param_shapes(network, obs_dim)
    rng = np.random.default_rng(_seed(key))
    if hasattr(network, "host_init"):  # the recurrent network draws its own layers
        return network.host_init(rng, shapes)
    return {
        name: {
            "kernel": orthogonal_matrix(
                rng, shapes[name]["kernel"].shape, HEAD_GAINS.get(name, HIDDEN_GAIN)
            ),
            "bias": np.zeros(shapes[name]["bias"].shape, np.float32),
        }
        for name in sorted(shapes)
    }


def init_params(network: nn.Module, key: jax.Array, obs_dim: int) -> dict:
    """Parameters of one learner from ``key``: orthogonal kernels drawn on the host, zero biases.

    Layers are filled in sorted name order from one ``numpy`` generator seeded by ``key``, so the
    result is a deterministic function of ``(network, key, obs_dim)``.
    """
    return jax.tree_util.tree_map(jnp.asarray, _init_host(network, key, obs_dim))


def init_stacked_params(network: nn.Module, keys: jax.Array, obs_dim: int) -> dict:
    """Parameters of K learners stacked on a leading K axis, learner k from ``keys[k]``.

    A Python loop over the single-learner init and a stack: learner k equals
    ``init_params(network, keys[k], obs_dim)`` exactly. Never ``jax.vmap(network.init)`` (see the
    module doc).
    """
    shapes = param_shapes(network, obs_dim)
    params = [_init_host(network, keys[k], obs_dim, shapes) for k in range(keys.shape[0])]
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *params)
