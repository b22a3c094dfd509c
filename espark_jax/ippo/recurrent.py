"""The recurrent (GRU) actor-critic, ``TrainConfig(network="gru")``, and its hidden state.

The network follows the released eSpark code's shared-parameter agent: per agent, FC (ReLU) ->
GRU cell -> FC, one network for every agent, as the MLP. Actor and critic are two such stacks
(the released code's critic is a separate RNN too); ``layer_norm`` normalises the critic's GRU
output before its value head, where the released code's ``use_layer_norm`` acts, and
``last_action`` feeds the actor its previous action one-hot (the released ``o_la`` input; zeros
at an episode's start). The GRU cell has PyTorch's ``GRUCell`` equations, its gates computed by
one input and one recurrent matmul.

The hidden state (the *memory*: ``{"actor", "critic": [..., H]}``, plus ``"action" [...]``
int32, -1 for none, with ``last_action``) lives in the rollout's environment carry, is reset to
zeros where an episode ends, and the rollout hands the PPO update a :class:`Sequences` buffer:
the transitions plus the memory at the rollout's first step. The update replays each
(environment, agent) sequence over the whole time axis from that memory, zeroing it after each
``done`` exactly as the rollout did (:meth:`RecurrentPolicy.sequence`), so the recomputed
log-probabilities at the behaviour parameters equal the stored ones.

Parameters are drawn on the host like the MLP's (:func:`~espark_jax.ippo.networks.init_params`):
orthogonal FC kernels (gain sqrt(2), heads 0.01 / 1.0), orthogonal GRU gate blocks (gain 1),
zero biases, unit layer-norm scales. Layer norm reduces with
:func:`~espark_jax.ippo.batching.invariant_sum`, so K vmapped learners equal K separate ones bit
for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import invariant_sum, kmap
from espark_jax.ippo.networks import HEAD_GAINS, HIDDEN_GAIN, ActorCritic, orthogonal_matrix

GATES = 3  # reset, update, new (PyTorch's order r, z, n)


class GRUCell(nn.Module):
    """PyTorch's ``GRUCell``: ``r, z = sigmoid(W_i x + b_i + W_h h + b_h)`` (per gate),
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.

    :meth:`gates` (the input side, ``W_i x + b_i``) and :meth:`recur` (the rest) are separate, so
    a sequence's input side can be computed for all its steps at once."""

    features: int

    def setup(self) -> None:
        self.input = nn.Dense(GATES * self.features)
        self.hidden = nn.Dense(GATES * self.features)

    def gates(self, x: jax.Array) -> jax.Array:
        """The input side of the gates, ``[..., 3 * features]``."""
        return self.input(x)

    def recur(self, h: jax.Array, gx: jax.Array) -> jax.Array:
        """New hidden state from ``h [..., features]`` and the input side ``gx``."""
        xr, xz, xn = jnp.split(gx, GATES, axis=-1)
        hr, hz, hn = jnp.split(self.hidden(h), GATES, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h

    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        """New hidden state ``[..., features]`` from ``h [..., features]`` and input ``x``."""
        return self.recur(h, self.gates(x))


class LayerNorm(nn.Module):
    """Layer norm over the last axis (PyTorch's eps 1e-5), with batch-invariant reductions."""

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalised ``x``, times a learnt scale plus a learnt bias (``[features]`` each)."""
        n = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (n,))
        bias = self.param("bias", nn.initializers.zeros, (n,))
        mean = invariant_sum(x, axis=-1)[..., None] * (1.0 / n)
        centred = x - mean
        var = invariant_sum(centred * centred, axis=-1)[..., None] * (1.0 / n)
        return centred * jax.lax.rsqrt(var + self.eps) * scale + bias


class GRUActorCritic(nn.Module):
    """Actor and critic, each FC (ReLU) -> GRU cell -> FC, over per-agent observations.

    Attributes:
        n_actions: number of discrete actions.
        hidden: width of the FC layer and of the GRU state.
        layer_norm: layer norm on the critic's GRU output before the value head.
        last_action: the actor also sees its previous action one-hot (memory ``"action"``).
    """

    n_actions: int
    hidden: int = 128
    layer_norm: bool = False
    last_action: bool = False

    def setup(self) -> None:
        width = self.hidden
        self.actor_in, self.critic_in = nn.Dense(width), nn.Dense(width)
        self.actor_gru, self.critic_gru = GRUCell(width), GRUCell(width)
        self.actor_head, self.critic_head = nn.Dense(self.n_actions), nn.Dense(1)
        if self.layer_norm:
            self.critic_norm = LayerNorm()

    def encode(self, obs: jax.Array, previous: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """The input sides of the actor's and the critic's gates (``[..., 3H]`` each) from the
        observations and, with ``last_action``, the previous actions (``[...]``, -1: none)."""
        obs = obs.astype(jnp.float32)  # a float64 environment's observations included
        x = obs
        if self.last_action:
            x = jnp.concatenate([obs, jax.nn.one_hot(previous, self.n_actions, dtype=x.dtype)], -1)
        actor = self.actor_gru.gates(nn.relu(self.actor_in(x)))
        return actor, self.critic_gru.gates(nn.relu(self.critic_in(obs)))

    def recur(self, memory: dict, gates: tuple[jax.Array, jax.Array]) -> dict:
        """``memory`` with its hidden states advanced by one step of input sides ``gates``."""
        actor = self.actor_gru.recur(memory["actor"], gates[0])
        return {
            **memory,
            "actor": actor,
            "critic": self.critic_gru.recur(memory["critic"], gates[1]),
        }

    def heads(self, actor: jax.Array, critic: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(logits [..., A], value [...])`` from the actor's and critic's hidden states."""
        v = self.critic_norm(critic) if self.layer_norm else critic
        return self.actor_head(actor), self.critic_head(v)[..., 0]

    def __call__(self, memory: dict, obs: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
        """``(memory, obs [..., obs_dim]) -> (new memory, logits [..., A], value [...])``; the
        new memory's ``"action"`` is left as it was (:meth:`RecurrentPolicy.advance` sets it)."""
        memory = self.recur(memory, self.encode(obs, memory.get("action")))
        logits, value = self.heads(memory["actor"], memory["critic"])
        return memory, logits, value

    def example_inputs(self, obs_dim: int) -> tuple[dict, jax.ShapeDtypeStruct]:
        """Shapes of one agent's ``(memory, obs)`` (for ``networks.param_shapes``)."""
        return zero_memory(self, (1,)), jax.ShapeDtypeStruct((1, obs_dim), jnp.float32)

    def host_init(self, rng: np.random.Generator, shapes: dict) -> dict:
        """Numpy parameters of the shapes ``shapes`` from ``rng`` (layers in sorted name order)."""
        out: dict = {}
        for name in sorted(shapes):
            layer = shapes[name]
            if name.endswith("_norm"):
                out[name] = {
                    "bias": np.zeros(layer["bias"].shape, np.float32),
                    "scale": np.ones(layer["scale"].shape, np.float32),
                }
            elif name.endswith("_gru"):
                out[name] = {part: _gates(rng, layer[part]) for part in sorted(layer)}
            else:
                out[name] = _dense(rng, layer, HEAD_GAINS.get(name, HIDDEN_GAIN))
        return out


def _dense(rng: np.random.Generator, layer: dict, gain: float) -> dict:
    return {
        "bias": np.zeros(layer["bias"].shape, np.float32),
        "kernel": orthogonal_matrix(rng, layer["kernel"].shape, gain),
    }


def _gates(rng: np.random.Generator, layer: dict) -> dict:
    """A gate layer ``[fan_in, 3H]``: an orthogonal ``[fan_in, H]`` block per gate, gain 1."""
    fan_in, width = layer["kernel"].shape
    blocks = [orthogonal_matrix(rng, (fan_in, width // GATES), 1.0) for _ in range(GATES)]
    return {
        "bias": np.zeros(layer["bias"].shape, np.float32),
        "kernel": np.concatenate(blocks, axis=1),
    }


def zero_memory(network: GRUActorCritic, shape: tuple[int, ...]) -> dict:
    """The memory at an episode's start for agents of batch shape ``shape``."""
    memory = {
        "actor": jnp.zeros(shape + (network.hidden,), jnp.float32),
        "critic": jnp.zeros(shape + (network.hidden,), jnp.float32),
    }
    if network.last_action:
        memory["action"] = jnp.full(shape, -1, jnp.int32)
    return memory


def reset_where(memory: dict, reset: jax.Array) -> dict:
    """``memory`` with the entries where ``reset`` (a leading-axes prefix of its leaves' shapes,
    e.g. ``[K, E]`` done flags) set back to their start value (zeros, action -1)."""

    def one(x: jax.Array) -> jax.Array:
        flag = reset.reshape(reset.shape + (1,) * (x.ndim - reset.ndim))
        start = jnp.full_like(x, -1) if x.dtype == jnp.int32 else jnp.zeros_like(x)
        return jnp.where(flag, start, x)

    return jax.tree_util.tree_map(one, memory)


@dataclasses.dataclass(frozen=True, eq=False)
class RecurrentPolicy:
    """The trainer's ``apply_fn`` for ``network="gru"``: the network's step, memory start,
    memory update and sequence replay, all for one learner (``kmap`` them over K)."""

    network: GRUActorCritic

    def step(self, params: Any, memory: dict, obs: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
        """One decision: ``(new memory, logits, value)``."""
        return self.network.apply({"params": params}, memory, obs)

    def initial(self, shape: tuple[int, ...]) -> dict:
        """Start memory for agents of batch shape ``shape`` (e.g. ``(K, E, n_agents)``)."""
        return zero_memory(self.network, tuple(shape))

    def advance(self, memory: dict, action: jax.Array, done: jax.Array) -> dict:
        """After a step: record ``action`` (with ``last_action``), then reset where ``done``."""
        if "action" in memory:
            memory = {**memory, "action": action.astype(jnp.int32)}
        return reset_where(memory, done)

    def sequence(
        self, params: Any, memory: dict, obs: jax.Array, starts: jax.Array, actions: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Replay sequences from their first memory: ``obs [T, B, obs_dim]``, ``starts [T, B]``
        (an episode starts at this step: reset the memory first), ``actions [T, B]``; returns
        ``(logits [T, B, A], values [T, B])``."""

        net = self.network

        def call(method: Any, *args: Any) -> Any:
            return net.apply({"params": params}, *args, method=method)

        previous = None  # the action before each step (-1 where an episode starts)
        if "action" in memory:
            before = jnp.concatenate([memory["action"][None], actions[:-1].astype(jnp.int32)])
            previous = jnp.where(starts, -1, before)
        gates = call(GRUActorCritic.encode, obs, previous)  # every step's input side at once

        def body(h: dict, xs: tuple) -> tuple[dict, dict]:
            gx_actor, gx_critic, start = xs
            h = call(GRUActorCritic.recur, reset_where(h, start), (gx_actor, gx_critic))
            return h, h

        hidden = {"actor": memory["actor"], "critic": memory["critic"]}
        _, states = jax.lax.scan(body, hidden, (*gates, starts))
        return call(GRUActorCritic.heads, states["actor"], states["critic"])


def make_network(config: Any, n_actions: int) -> tuple[Any, Any]:
    """The network of ``config.network`` and its ``apply_fn``: ``apply_fn(params, obs)`` for the
    MLP, a :class:`RecurrentPolicy` for the GRU."""
    if config.network == "gru":
        gru = GRUActorCritic(n_actions, config.hidden[0], config.layer_norm, config.last_action)
        return gru, RecurrentPolicy(gru)
    mlp = ActorCritic(n_actions, config.hidden, config.activation)
    return mlp, lambda params, obs: mlp.apply({"params": params}, obs)


def is_recurrent(apply_fn: Any) -> bool:
    """Whether a trainer's ``apply_fn`` is a :class:`RecurrentPolicy`."""
    return isinstance(apply_fn, RecurrentPolicy)


@flax.struct.dataclass
class Sequences:
    """The rollout buffer of a recurrent policy: ``steps`` (a
    :class:`~espark_jax.ippo.rollout.Transition`, leaves ``[T, K, E, ...]``) and ``memory``,
    the memory before the first step (leaves ``[K, E, n_agents, ...]``)."""

    steps: Any
    memory: dict


def recurrent_policy_step(
    policy: RecurrentPolicy,
    params: Any,
    memory: dict,
    obs: jax.Array,
    mask: jax.Array | None,
    key: jax.Array,
) -> tuple[dict, jax.Array, jax.Array, jax.Array]:
    """:func:`~espark_jax.ippo.rollout.policy_step` with memory: ``(new memory, action,
    log_prob, value)`` of K learners (``memory`` leaves ``[K, ...]``)."""

    def one(p, m, o, msk, k):
        m, logits, value = policy.step(p, m, o)
        action = dist.sample(k, logits, msk)
        return m, action, dist.log_prob(logits, msk, action), value

    return kmap(one)(params, memory, obs, mask, key)


def sequence_starts(done: jax.Array) -> jax.Array:
    """``starts [T, ...]`` from ``done [T, ...]``: step t begins an episode when step t - 1
    ended one (step 0 continues from the stored memory, already reset)."""
    return jnp.concatenate([jnp.zeros_like(done[:1]), done[:-1]], axis=0)
