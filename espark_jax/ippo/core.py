"""The types every part of the K-parallel trainer shares.

:class:`TrainConfig` (what shapes the compiled programs and the schedule), :class:`LearnerState`
(K learners with a leading K axis), the :class:`RolloutSource` contract that each environment
kind implements, and the two K-axis tree helpers :func:`select_slot` and :func:`broadcast`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp

from espark_jax.ippo.ppo import PPOConfig
from espark_jax.masks.safe import MaskFn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes the compiled programs and the training schedule.

    Attributes:
        num_envs: environments per learner (E).
        num_steps: rollout length per update; 0 means the train episode length.
        num_updates: updates per learner done by :func:`espark_jax.ippo.train.train`.
        updates_per_chunk: updates per :meth:`Trainer.train_chunk` call (U).
        network: ``"mlp"`` (separate actor and critic MLPs over each observation) or ``"gru"``
            (actor and critic each FC -> GRU cell -> FC, a hidden state per agent carried
            through the episode: :mod:`espark_jax.ippo.recurrent`, as the released eSpark code).
        hidden, activation: the MLP torsos' widths and activation; for ``"gru"``, one width
            (the FC and GRU width; the released code: 128), the FC layer is ReLU.
        layer_norm: ``"gru"`` only: layer norm on the critic's GRU output before the value head
            (where the released code's ``use_layer_norm`` acts; its actor has none).
        last_action: ``"gru"`` only: the actor also sees its previous action one-hot (zeros at
            an episode's start), as the released actor's ``o_la`` input.
        reward_scale: multiplier applied to rewards before PPO; ``None`` takes the scenario
            family's default (:mod:`espark_jax.families`), filled in by ``make``.
        ppo: PPO hyper-parameters.
        eval_every: evaluate every this many updates (and at the end).
        eval_envs: environments per evaluation.
        eval_split: split used for the periodic evaluation (and the selection score).
        eval_greedy: greedy (True) or sampled (False) periodic evaluation.
        select_last: selection score = mean evaluation return over this many last checkpoints.
        fuse_chunk: one jitted program per chunk (True; JAX environments), or the rollout and
            the update as two programs dispatched U times without host synchronisation (False,
            the default: the update then compiles once per trainer, whatever the masks).
        shard: spread K (and E) over all visible devices when there are several.
    """

    num_envs: int = 8
    num_steps: int = 0
    num_updates: int = 100
    updates_per_chunk: int = 5
    network: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    layer_norm: bool = False
    last_action: bool = False
    reward_scale: float | None = None
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    eval_every: int = 10
    eval_envs: int = 4
    eval_split: str = "validation"
    eval_greedy: bool = True
    select_last: int = 3
    fuse_chunk: bool = False
    shard: bool = True

    def __post_init__(self) -> None:
        positive = (
            "num_envs",
            "num_updates",
            "updates_per_chunk",
            "eval_every",
            "eval_envs",
            "select_last",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_steps < 0:
            raise ValueError("TrainConfig.num_steps must be >= 0 (0 = the train episode length)")
        if isinstance(self.ppo, dict):  # from JSON
            object.__setattr__(self, "ppo", PPOConfig(**self.ppo))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        check_network(self.network, self.hidden, self.layer_norm, self.last_action)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: ``TrainConfig(**d)``)."""
        return dataclasses.asdict(self)


NETWORKS = ("mlp", "gru")
"""The policy networks a :class:`TrainConfig` can name."""

DEFAULT_HIDDEN = {"mlp": (64, 64), "gru": (128,)}
"""Hidden widths the command line uses per network when ``--hidden`` is not given (GRU: the
released code's ``hidden_dim``)."""


def check_network(
    network: str, hidden: tuple[int, ...], layer_norm: bool, last_action: bool
) -> None:
    """Raise a one-line ``ValueError`` naming the fix for an inconsistent network choice."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; use --network mlp or --network gru")
    if network == "mlp" and (layer_norm or last_action):
        raise ValueError("--layer-norm and --last-action apply to --network gru only")
    if network == "gru" and len(hidden) != 1:
        raise ValueError(
            f"--network gru takes one hidden width (FC and GRU), e.g. --hidden 128; got {hidden}"
        )


@flax.struct.dataclass
class LearnerState:
    """K learners: every leaf has a leading K axis (environment leaves ``[K, E, ...]``; ``envs``
    is None for host environments, whose simulations live in their worker processes)."""

    params: Any
    opt_state: Any
    envs: Any
    key: jax.Array  # [K, 2]
    n_updates: jax.Array  # [K] int32


class RolloutSource(Protocol):
    """Where a trainer's experience comes from: one implementation per environment kind.

    Attributes:
        env: the environment.
        num_steps: decisions per rollout (one update).
        shardable: the source's programs may be sharded over a device mesh.
        blocking: the source syncs with the host every step (updates are timed then).
        phase: for fused chunks, the pure ``phase(state, env_params) -> (state, traj,
            last_value, stats, update_key)`` of the current masks; None when not jittable.
        train_params: the environment parameters passed to ``phase``.
        timings: seconds spent per activity (host sources), for benchmarks.
    """

    env: Any
    num_steps: int
    shardable: bool
    blocking: bool
    phase: Any
    train_params: Any
    timings: dict[str, float]

    def bind(self, trainer: Any) -> None:
        """Called once by the trainer: the source reads its network, log and mesh from it."""

    def check(self, n_learners: int) -> None:
        """Raise a one-line ``ValueError`` when the source cannot serve ``n_learners``."""

    def set_masks(self, mask_fns: tuple[MaskFn, ...]) -> None:
        """Build (or take from its cache) the rollout program of this mask set."""

    def reset(self, env_keys: jax.Array) -> Any:
        """Fresh environments of K learners (``env_keys [K, E, 2]``): the state's ``envs``."""

    def rollout(self, state: LearnerState) -> tuple:
        """``(state, traj [T, K, E, ...], last_value, stats, update_key, extras {name: [K]})``."""

    def evaluate(
        self, params: Any, key: jax.Array, split: str, greedy: bool, num_envs: int, masked: bool
    ) -> dict[str, Any]:
        """Evaluate learners ``params [K', ...]``; the dict of :meth:`Trainer.evaluate`."""

    def record_contexts(self, key: jax.Array) -> dict[str, Any]:
        """Mask contexts visited by a reference policy (``field -> [n, ...]``), for mask checks."""


def select_slot(tree: Any, slot: int) -> Any:
    """The learner in ``slot`` of a pytree with a leading K axis."""
    return jax.tree_util.tree_map(lambda x: x[slot], tree)


def broadcast(tree: Any, k: int) -> Any:
    """One learner's pytree repeated on a new leading K axis."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (k,) + jnp.shape(x)), tree)
