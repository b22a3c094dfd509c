"""What a mask program is compiled against: a JSON-serialisable description built from an EnvSpec.

The sandbox child receives a :class:`MaskTask` as JSON and never the environment itself. Sample
contexts for the value checks are generated from it (random, zeros, extremes), and recorded
rollout contexts can be added as stacked arrays (or an ``.npz`` of them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from envs_jax.core import EnvSpec, MaskContext
from espark_jax.presets import MASK_INTERFACES as INTERFACES

_DTYPES = ("float32", "float64", "int32", "int64", "bool")
#: dtype of ``action_space`` as the trainer passes it (``jax_source``, ``host_source``,
#: ``evaluate``), x64 or not.
ACTION_DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One context field with its concrete shape.

    Attributes:
        name: attribute name on the context (``ctx.<name>``).
        shape: concrete shape for one environment, e.g. ``(2, 3)``.
        dtype: one of ``float32``, ``float64``, ``int32``, ``int64``, ``bool``.
        description: meaning and unit (goes into prompts and hints).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    description: str = ""


@dataclasses.dataclass(frozen=True)
class MaskTask:
    """Everything the compiler needs to know about the mask function it checks.

    Attributes:
        function_name: the function the LLM must define (``"compute_mask"``).
        fields: the context fields the function may read.
        agent_shape: agent axes of the output (MABIM ``(W, N)``, SUMO ``(n_intersections,)``).
        n_actions: size of the last output axis.
        action_values: numeric meaning of each action, passed as ``action_space``.
        env_name: the scenario the task was built from (for messages and records).
        interface: ``"native"`` (``compute_mask(ctx, action_space)``) or ``"released"``
            (the authors' ``compute_mask(agent_states, supply_chain, action_space)``, translated
            by :mod:`espark_jax.masks.released` before the checks).
        facts: ``(name, values)`` pairs the released interface needs (warehouse names, the
            scenario's constants); empty for native tasks.
    """

    function_name: str
    fields: tuple[FieldInfo, ...]
    agent_shape: tuple[int, ...]
    n_actions: int
    action_values: tuple[float, ...]
    env_name: str = ""
    interface: str = "native"
    facts: tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self) -> None:
        if self.interface not in INTERFACES:
            raise ValueError(
                f"MaskTask: interface {self.interface!r}; use one of {', '.join(INTERFACES)}"
            )
        if not self.function_name.isidentifier():
            raise ValueError(
                f"MaskTask: function_name {self.function_name!r} is not a Python identifier"
            )
        if len(self.action_values) != self.n_actions:
            raise ValueError(
                f"MaskTask: action_values has {len(self.action_values)} entries, "
                f"expected n_actions={self.n_actions}"
            )
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"MaskTask: duplicate field names in {names}")
        for f in self.fields:
            if f.dtype not in _DTYPES:
                raise ValueError(
                    f"MaskTask: field {f.name!r} has dtype {f.dtype!r}; "
                    f"use one of {', '.join(_DTYPES)}"
                )
            if not f.name.isidentifier() or f.name.startswith("_"):
                raise ValueError(
                    f"MaskTask: field name {f.name!r} must be a public Python identifier"
                )

    # ------------------------------------------------------------------ construction / JSON
    @classmethod
    def from_env_spec(cls, spec: EnvSpec, function_name: str = "compute_mask") -> "MaskTask":
        """Build the task from an environment spec (context fields, dims, agents and actions)."""
        fields = tuple(
            FieldInfo(f.name, spec.field_shape(f), f.dtype, f.description)
            for f in spec.context_fields
        )
        return cls(
            function_name=function_name,
            fields=fields,
            agent_shape=tuple(int(a) for a in spec.agent_shape),
            n_actions=int(spec.n_actions),
            action_values=tuple(float(v) for v in spec.action_values),
            env_name=spec.name,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples)."""
        return {
            "function_name": self.function_name,
            "fields": [
                {
                    "name": f.name,
                    "shape": list(f.shape),
                    "dtype": f.dtype,
                    "description": f.description,
                }
                for f in self.fields
            ],
            "agent_shape": list(self.agent_shape),
            "n_actions": self.n_actions,
            "action_values": list(self.action_values),
            "env_name": self.env_name,
            # only when not native, so native tasks keep their recorded check keys
            **(
                {"interface": self.interface, "facts": {k: list(v) for k, v in self.facts}}
                if self.interface != "native"
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MaskTask":
        """Inverse of :meth:`to_dict`."""
        return cls(
            function_name=str(d["function_name"]),
            fields=tuple(
                FieldInfo(
                    str(f["name"]),
                    tuple(int(s) for s in f["shape"]),
                    str(f["dtype"]),
                    str(f.get("description", "")),
                )
                for f in d["fields"]
            ),
            agent_shape=tuple(int(a) for a in d["agent_shape"]),
            n_actions=int(d["n_actions"]),
            action_values=tuple(float(v) for v in d["action_values"]),
            env_name=str(d.get("env_name", "")),
            interface=str(d.get("interface", "native")),
            facts=tuple((str(k), tuple(v)) for k, v in sorted(d.get("facts", {}).items())),
        )

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "MaskTask":
        """Parse a JSON string written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ derived facts
    @property
    def field_names(self) -> tuple[str, ...]:
        """Names of the context fields, in declaration order."""
        return tuple(f.name for f in self.fields)

    @property
    def field_map(self) -> dict[str, FieldInfo]:
        """Fields by name."""
        return {f.name: f for f in self.fields}

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape the mask function must return: ``(*agent_shape, n_actions)``."""
        return (*self.agent_shape, self.n_actions)

    @property
    def uses_x64(self) -> bool:
        """True when some field is 64-bit (the checks then run with ``jax_enable_x64``)."""
        return any(f.dtype.endswith("64") for f in self.fields)

    @property
    def action_dtype(self) -> str:
        """dtype of ``action_space``: ``float32``, as the trainer passes it (x64 or not)."""
        return ACTION_DTYPE

    def signature(self) -> str:
        """The required signature, e.g. ``def compute_mask(ctx, action_space)``."""
        if self.interface == "released":
            return f"def {self.function_name}(agent_states, supply_chain, action_space)"
        return f"def {self.function_name}(ctx, action_space)"

    def action_space(self) -> np.ndarray:
        """``action_values`` as a numpy array of :attr:`action_dtype`."""
        return np.asarray(self.action_values, dtype=self.action_dtype)

    def abstract_context(self, batch: tuple[int, ...] = ()) -> MaskContext:
        """A context of ``jax.ShapeDtypeStruct`` leaves (optionally with leading batch axes)."""
        import jax

        return MaskContext(
            {
                f.name: jax.ShapeDtypeStruct((*batch, *f.shape), np.dtype(f.dtype))
                for f in self.fields
            }
        )


# ---------------------------------------------------------------------- sample contexts
def _random_field(rng: np.random.Generator, f: FieldInfo, n: int) -> np.ndarray:
    """Random values of plausible size: log-normal floats, small non-negative ints, coin flips."""
    shape = (n, *f.shape)
    if f.dtype == "bool":
        return rng.random(shape) < 0.5
    if f.dtype.startswith("int"):
        return rng.integers(0, 100, size=shape).astype(f.dtype)
    # a per-sample scale so that some samples are small and some large (1e-2 .. 1e4 overall)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(1000.0), size=(n,) + (1,) * len(f.shape)))
    vals = scale * rng.lognormal(0.0, 1.0, size=shape)
    vals = np.where(rng.random(shape) < 0.1, 0.0, vals)  # some exact zeros (empty stock, no demand)
    return vals.astype(f.dtype)


def _constant_field(f: FieldInfo, n: int, value: float) -> np.ndarray:
    if f.dtype == "bool":
        return np.full((n, *f.shape), bool(value))
    if f.dtype.startswith("int"):
        return np.full((n, *f.shape), int(min(value, 2**31 - 1)), dtype=f.dtype)
    return np.full((n, *f.shape), value, dtype=f.dtype)


def sample_contexts(
    task: MaskTask, n_random: int = 16, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Synthetic contexts for the value checks, by kind.

    Returns ``{"random": fields, "zeros": fields, "extreme": fields}`` where ``fields`` maps every
    field name to an array ``[B, *shape]``. ``extreme`` holds two contexts: every value large
    (1e6) and every value tiny (1e-3 floats, 1 for ints).
    """
    rng = np.random.default_rng(seed)
    random = {f.name: _random_field(rng, f, n_random) for f in task.fields}
    zeros = {f.name: _constant_field(f, 1, 0.0) for f in task.fields}
    extreme = {
        f.name: np.concatenate(
            [
                _constant_field(f, 1, 1e6),
                _constant_field(f, 1, 1e-3 if f.dtype.startswith("float") else 1),
            ]
        )
        for f in task.fields
    }
    return {"random": random, "zeros": zeros, "extreme": extreme}


def normalize_samples(task: MaskTask, samples: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check recorded contexts against the task and flatten their leading axes to one batch axis.

    ``samples`` maps every field name to an array ``[*batch, *field_shape]`` (the same batch axes
    for all fields, e.g. ``[T, E]`` from a rollout); a :class:`MaskContext` is accepted too.

    Raises:
        ValueError: one line naming the missing, unknown or mis-shaped field.
    """
    if isinstance(samples, MaskContext):
        samples = samples.as_dict()
    missing = [n for n in task.field_names if n not in samples]
    if missing:
        raise ValueError(
            f"recorded samples lack fields {missing}; "
            f"pass every field of the task: {list(task.field_names)}"
        )
    extra = sorted(set(samples) - set(task.field_names))
    if extra:
        raise ValueError(
            f"recorded samples have unknown fields {extra}; valid fields: {list(task.field_names)}"
        )
    out: dict[str, np.ndarray] = {}
    batch: tuple[int, ...] | None = None
    for f in task.fields:
        arr = np.asarray(samples[f.name])
        nb = arr.ndim - len(f.shape)
        if nb < 1 or tuple(arr.shape[nb:]) != f.shape:
            raise ValueError(
                f"recorded field {f.name!r} has shape {arr.shape}; "
                f"expected [batch..., {', '.join(map(str, f.shape))}]"
            )
        if batch is None:
            batch = tuple(arr.shape[:nb])
        elif tuple(arr.shape[:nb]) != batch:
            raise ValueError(
                f"recorded field {f.name!r} has batch axes {arr.shape[:nb]}, others have {batch}"
            )
        out[f.name] = arr.reshape((math.prod(batch), *f.shape)).astype(f.dtype)
    return out


def save_samples(path: str, task: MaskTask, samples: Mapping[str, Any]) -> None:
    """Write recorded contexts as an ``.npz`` (one array per field, leading axes flattened)."""
    np.savez(path, **normalize_samples(task, samples))


def load_samples(path: str, task: MaskTask) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of stacked context fields and check it against the task."""
    with np.load(path, allow_pickle=False) as data:
        return normalize_samples(task, {k: data[k] for k in data.files})
