"""Hand-made environment specs and mask contexts for the LLM-side tests (no environment needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import ContextField, EnvSpec, MaskContext
from envs_jax.mabim.config import MULTIPLIERS_34
from envs_jax.mabim.features import MASK_CONTEXT_FIELDS
from espark_jax.llm import prompts as P
from espark_jax.llm.base import LLMRequest

MABIM_MULTIPLIERS = MULTIPLIERS_34
SUMO_PHASES = ("WT-ET", "NT-ST", "WL-EL", "NL-SL", "WL-WT", "EL-ET", "SL-ST", "NL-NT")

SUMO_FIELDS = (
    ContextField(
        "phase_pressure",
        ("I", "P"),
        "float32",
        "incoming minus outgoing vehicles of each phase's movements",
    ),
    ContextField(
        "phase_queue", ("I", "P"), "float32", "halting vehicles on the lanes each phase serves"
    ),
    ContextField(
        "phase_available", ("I", "P"), "bool", "True where the intersection can serve the phase"
    ),
    ContextField("current_phase", ("I",), "int32", "index of the phase that is green now"),
)


def mabim_spec(W: int = 2, N: int = 3, description: str = "Hand-made test scenario.") -> EnvSpec:
    """A MABIM-like spec with the real context fields and the 34 multipliers."""
    A = len(MABIM_MULTIPLIERS)
    return EnvSpec(
        name="mabim/test-hand",
        n_agents=W * N,
        obs_dim=8,
        n_actions=A,
        agent_shape=(W, N),
        action_values=MABIM_MULTIPLIERS,
        action_names=tuple(f"x{v:.2f}" for v in MABIM_MULTIPLIERS),
        reward_components=("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost"),
        group_names=tuple(f"store{w}" for w in range(W)),
        agent_group=np.repeat(np.arange(W), N),
        episode_length={"train": 100, "validation": 62, "test": 60},
        context_fields=MASK_CONTEXT_FIELDS,
        dims={"W": W, "N": N, "L": 21},
        description=description,
    )


def sumo_spec(n_intersections: int = 4) -> EnvSpec:
    """A SUMO-like spec with per-phase pressure / queue / availability and the current phase."""
    return EnvSpec(
        name="sumo/test-grid",
        n_agents=n_intersections,
        obs_dim=16,
        n_actions=8,
        agent_shape=(n_intersections,),
        action_values=tuple(float(i) for i in range(8)),
        action_names=SUMO_PHASES,
        reward_components=("stopped", "waiting_time", "queue_length", "pressure"),
        group_names=("intersections",),
        agent_group=np.zeros(n_intersections, dtype=int),
        episode_length={"train": 240, "validation": 240, "test": 240},
        context_fields=SUMO_FIELDS,
        dims={"I": n_intersections, "P": 8},
        is_jax=False,
        description="Hand-made 2x2 grid.",
    )


def abstract_context(spec: EnvSpec) -> MaskContext:
    """A context of ShapeDtypeStructs (for jax.eval_shape)."""
    return MaskContext(
        {
            f.name: jax.ShapeDtypeStruct(spec.field_shape(f), jnp.dtype(f.dtype))
            for f in spec.context_fields
        }
    )


def random_context(spec: EnvSpec, seed: int, batch: tuple[int, ...] = ()) -> MaskContext:
    """A context of random, plausibly scaled numpy values for every field (optional batch axes)."""
    rng = np.random.default_rng(seed)
    fields = {}
    for f in spec.context_fields:
        shape = (*batch, *spec.field_shape(f))
        if f.dtype == "bool":
            value = rng.random(shape) < 0.7
        elif f.dtype == "int32":
            value = rng.integers(0, 8 if "phase" in f.name else 30, shape).astype(np.int32)
        elif f.name == "capacity":
            value = rng.uniform(100.0, 2000.0, shape)
        elif f.name == "vlt":
            value = np.floor(rng.uniform(1.0, 10.0, shape))
        elif "pressure" in f.name:
            value = rng.normal(0.0, 10.0, shape)
        else:
            value = np.floor(rng.uniform(0.0, 60.0, shape))
        fields[f.name] = value.astype(np.dtype(f.dtype))
    return MaskContext(fields)


def compile_source(source: str, backend: str = "jax"):
    """Exec a rendered mask source with ``np``/``jnp`` bound to jax.numpy (or to numpy for fast
    value checks of the same code); returns its compute_mask."""
    module = jnp if backend == "jax" else np
    namespace = {"np": module, "jnp": module}
    exec(compile(source, "<template>", "exec"), namespace)
    return namespace["compute_mask"]


def generator_requests(info: P.EnvPromptInfo, k: int, iteration: int = 1) -> list[LLMRequest]:
    """The K generator requests of one iteration (no feedback yet)."""
    return [
        LLMRequest.from_prompt(
            P.generator_messages(info, iteration, s, n_slots=k), iteration, s, "generator"
        )
        for s in range(k)
    ]
