"""A small inventory environment honouring the ``envs_jax`` contract, for trainer tests.

W independent warehouses x N SKUs, one agent each (warehouse-major). Every day an agent orders
``floor(action_values[a] * demand_mean)`` units that arrive after a one-day lead time; random
demand is served from stock, unmet demand is lost. Rewards use MABIM's component names so
the trainer's reporting is exercised: profit on sales, excess cost for arrivals beyond a per-SKU
shelf limit, a fixed order cost, holding cost and a backlog penalty on lost sales. Demand is
``floor(u * mean)`` with ``u`` in [0.5, 1.5) from a cheap hash of the key bits, the day and the
SKU: no ``jax.random`` sampler, whose threefry code costs seconds of XLA compile time on CPU. The
mask context exposes a subset of MABIM's fields (same names and meanings).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import EnvSpec, MaskContext
from envs_jax.mabim.features import MASK_CONTEXT_FIELDS

ACTION_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
COMPONENTS = ("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost")
_CTX_NAMES = ("in_stock", "in_transit", "demand_mean", "demand_std", "echelon", "day", "days_left")


def _hash_uniform(key: jax.Array, day: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Pseudo-random numbers in [0, 1) from the key bits, the day and the position (sin hash)."""
    bits = jnp.asarray(key, jnp.uint32).reshape(-1)
    seed = (bits[0] % 10007).astype(jnp.float32) + (bits[-1] % 10009).astype(jnp.float32) * 0.618
    pos = jnp.arange(int(np.prod(shape)), dtype=jnp.float32).reshape(shape)
    x = jnp.sin(seed * 0.1234 + pos * 12.9898 + day.astype(jnp.float32) * 78.233) * 43758.5453
    return x - jnp.floor(x)


@flax.struct.dataclass
class ToyParams:
    demand_mean: jax.Array  # [W, N]
    price: jax.Array  # [W, N]
    cost: jax.Array  # [W, N]
    shelf: jax.Array  # [W, N] units beyond which arrivals are destroyed
    episode_length: int = flax.struct.field(pytree_node=False, default=20)


@flax.struct.dataclass
class ToyState:
    in_stock: jax.Array  # [W, N]
    in_transit: jax.Array  # [W, N]
    day: jax.Array  # scalar int32


class ToyInventoryEnv:
    """Toy multi-agent inventory env with the ``MultiAgentEnv`` API (jit- and vmap-able)."""

    def __init__(
        self, n_warehouses: int = 1, n_skus: int = 4, episode_lengths=(20, 12, 12), seed: int = 0
    ):
        rng = np.random.default_rng(seed)
        w, n = n_warehouses, n_skus
        self._mean = rng.uniform(5.0, 20.0, size=(w, n)).astype(np.float32)
        self._price = rng.uniform(8.0, 12.0, size=(w, n)).astype(np.float32)
        self._cost = (self._price * rng.uniform(0.6, 0.8, size=(w, n))).astype(np.float32)
        self._lengths = dict(zip(("train", "validation", "test"), episode_lengths))
        ctx_fields = tuple(f for f in MASK_CONTEXT_FIELDS if f.name in _CTX_NAMES)
        group = np.repeat(np.arange(w), n).astype(np.int32)
        self.spec = EnvSpec(
            name=f"toy/inventory-{w}x{n}",
            n_agents=w * n,
            obs_dim=6 + w,
            n_actions=len(ACTION_VALUES),
            agent_shape=(w, n),
            action_values=ACTION_VALUES,
            action_names=tuple(f"x{v:g}" for v in ACTION_VALUES),
            reward_components=COMPONENTS,
            group_names=tuple(f"store{i}" for i in range(w)),
            agent_group=group,
            episode_length=dict(self._lengths),
            context_fields=ctx_fields,
            dims={"W": w, "N": n, "L": 21, "A": len(ACTION_VALUES)},
            description="toy inventory environment for tests",
            data_source="synthetic",
        )

    def default_params(self, split: str = "train") -> ToyParams:
        """Parameters of one split (the splits differ only in episode length)."""
        if split not in self._lengths:
            raise ValueError(f"unknown split {split!r}; use one of {sorted(self._lengths)}")
        return ToyParams(
            demand_mean=jnp.asarray(self._mean),
            price=jnp.asarray(self._price),
            cost=jnp.asarray(self._cost),
            shelf=jnp.asarray(4.0 * self._mean),
            episode_length=self._lengths[split],
        )

    def _obs(self, state: ToyState, params: ToyParams) -> jax.Array:
        w, n = self.spec.agent_shape
        z = params.demand_mean + 1.0
        left = (params.episode_length - state.day).astype(jnp.float32) / params.episode_length
        feats = [
            state.in_stock / z,
            state.in_transit / z,
            (state.in_stock + state.in_transit) / z,
            (params.price - params.cost) / params.price,
            params.demand_mean / 20.0,
            jnp.broadcast_to(left, (w, n)),
        ]
        local = jnp.stack(feats, axis=-1)
        onehot = jnp.broadcast_to(jnp.eye(w)[:, None, :], (w, n, w))
        return jnp.concatenate([local, onehot], axis=-1).reshape(w * n, -1)

    def reset(self, key: jax.Array, params: ToyParams):
        """Random initial stock between 0 and 3 days of demand; nothing in transit."""
        frac = 3.0 * _hash_uniform(key, jnp.zeros((), jnp.int32), params.demand_mean.shape)
        state = ToyState(
            in_stock=jnp.floor(frac * params.demand_mean),
            in_transit=jnp.zeros_like(params.demand_mean),
            day=jnp.zeros((), jnp.int32),
        )
        return self._obs(state, params), state

    def step(self, key: jax.Array, state: ToyState, actions: jax.Array, params: ToyParams):
        """One day: receive yesterday's order, sell, order; returns the contract's 5-tuple."""
        values = jnp.asarray(ACTION_VALUES, jnp.float32)
        shape = params.demand_mean.shape
        qty = jnp.floor(values[actions].reshape(shape) * params.demand_mean)
        noise = 0.5 + _hash_uniform(key, state.day + 1, shape)
        demand = jnp.floor(noise * params.demand_mean)
        sale = jnp.minimum(demand, state.in_stock)
        stock = state.in_stock - sale
        accepted = jnp.minimum(state.in_transit, jnp.maximum(params.shelf - stock, 0.0))
        excess = state.in_transit - accepted
        stock = stock + accepted
        margin = params.price - params.cost
        comps = {
            "profit": sale * margin,
            "excess_cost": 0.5 * params.cost * excess,
            "order_cost": 10.0 * (qty > 0),
            "holding_cost": 0.003 * stock,
            "backlog_cost": 0.1 * margin * (demand - sale),
        }
        reward = (
            comps["profit"]
            - comps["excess_cost"]
            - comps["order_cost"]
            - comps["holding_cost"]
            - comps["backlog_cost"]
        )
        new_state = ToyState(in_stock=stock, in_transit=qty, day=state.day + 1)
        done = new_state.day >= params.episode_length
        n = self.spec.n_agents
        info = {"components": {k: v.reshape(n) for k, v in comps.items()}}
        return self._obs(new_state, params), new_state, reward.reshape(n), done, info

    def mask_context(self, state: ToyState, params: ToyParams) -> MaskContext:
        """The MABIM-named fields a mask function may read."""
        w, n = self.spec.agent_shape
        return MaskContext(
            {
                "in_stock": state.in_stock,
                "in_transit": state.in_transit,
                "demand_mean": params.demand_mean,
                "demand_std": jnp.sqrt(params.demand_mean),
                "echelon": jnp.broadcast_to(jnp.arange(w, dtype=jnp.int32)[:, None], (w, n)),
                "day": state.day,
                "days_left": params.episode_length - state.day,
            }
        )
