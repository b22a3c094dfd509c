"""Small mask-compiler tasks for the tests: a MABIM one (W=2, N=3, L=21, A=34), a SUMO-like one."""

from __future__ import annotations

import numpy as np

from envs_jax.core import ContextField, EnvSpec, MaskContext
from envs_jax.mabim.config import MULTIPLIERS_34
from envs_jax.mabim.features import MASK_CONTEXT_FIELDS
from espark_jax.masks import MaskTask, sample_contexts

MABIM_MULTIPLIERS = MULTIPLIERS_34


def mabim_spec() -> EnvSpec:
    """A hand-built MABIM spec: 2 warehouses x 3 SKUs, 21 lookback days, 34 multipliers."""
    return EnvSpec(
        name="mabim/test-2x3",
        n_agents=6,
        obs_dim=8,
        n_actions=34,
        agent_shape=(2, 3),
        action_values=MABIM_MULTIPLIERS,
        action_names=tuple(f"x{v:.2f}" for v in MABIM_MULTIPLIERS),
        reward_components=("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost"),
        group_names=("head", "tail"),
        agent_group=np.array([0, 0, 0, 1, 1, 1]),
        episode_length={"train": 100},
        context_fields=MASK_CONTEXT_FIELDS,
        dims={"W": 2, "N": 3, "L": 21, "A": 34},
    )


SUMO_FIELDS = (
    ContextField("phase_queue", ("I", "P"), "float32", "halting vehicles served by each phase"),
    ContextField(
        "phase_available", ("I", "P"), "bool", "True where the phase exists at this intersection"
    ),
    ContextField("current_phase", ("I",), "int32", "index of the active phase"),
)


def sumo_spec() -> EnvSpec:
    """A SUMO-like spec: 4 intersections, 8 phases, agent_shape (4,)."""
    return EnvSpec(
        name="sumo/test-4",
        n_agents=4,
        obs_dim=8,
        n_actions=8,
        agent_shape=(4,),
        action_values=tuple(float(i) for i in range(8)),
        action_names=tuple(f"phase{i}" for i in range(8)),
        reward_components=("queue",),
        group_names=("tls",),
        agent_group=np.zeros(4, dtype=int),
        episode_length={"train": 240},
        context_fields=SUMO_FIELDS,
        dims={"I": 4, "P": 8},
        is_jax=False,
    )


def mabim_task() -> MaskTask:
    return MaskTask.from_env_spec(mabim_spec())


def sumo_task() -> MaskTask:
    return MaskTask.from_env_spec(sumo_spec())


def contexts(task: MaskTask, seed: int = 1) -> MaskContext:
    """A batch of single-environment contexts (6 random, zeros, 2 extremes) stacked on axis 0."""
    kinds = sample_contexts(task, n_random=6, seed=seed).values()
    return MaskContext({f.name: np.concatenate([k[f.name] for k in kinds]) for f in task.fields})
