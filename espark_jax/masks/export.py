"""Checked once, run as checked: mask programs exported with ``jax.export``, and their loader.

The sandbox child traces an accepted program under the trainer's calling convention and
serialises it (:func:`export_mask`); the trainer's process deserialises those bytes, verifies
them (:func:`load_exported`) and calls the result, an :class:`ExportedMask`, inside the rollout.
It never executes the program's Python text.

The calling convention, the one the check and the trainer share:

* the context: exactly the task's fields (nothing the rollout adds, such as ``ctx.key``), each
  cast to its documented dtype, with ONE leading batch axis ``b`` that is symbolic, so one
  artefact serves any number of environments;
* ``action_space``: ``float32 [A]`` (``task.ACTION_DTYPE``), concrete or traced alike (the
  artefact is a graph: how it is called cannot change what it computes);
* the result: the program's own ``[b, *agent_shape, A]`` values (bool or 0/1 numbers), which
  the trainer's process turns into bool with the empty-row fallback (trusted code, not exported);
* the run's x64 flag at export time (:class:`Convention`), for the CPU (where the child checks
  it) and the run's own platform.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.masks.safe import MaskFn, fallback_empty_rows
from espark_jax.masks.task import ACTION_DTYPE, MaskTask

#: The only custom call an exported mask may contain (jax.export's own shape checks).
ALLOWED_CUSTOM_CALLS = frozenset({"shape_assertion"})
_CUSTOM_CALL = re.compile(r"custom_call\s*@([\w.$-]+)|call_target_name\s*=\s*\"([^\"]*)\"")
_BANNED_OPS = re.compile(r"stablehlo\.(infeed|outfeed|send|recv)\b")


class ArtefactError(ValueError):
    """An exported mask that cannot be loaded: corrupt, tampered with, or made for another run."""


@dataclasses.dataclass(frozen=True)
class Convention:
    """How the trainer of this process calls mask functions: its x64 flag and platforms.

    Attributes:
        x64: ``jax_enable_x64`` of the run (the export traces under the same flag).
        platforms: platforms the artefact is lowered for: ``cpu`` (the check) and the run's.
    """

    x64: bool
    platforms: tuple[str, ...] = ("cpu",)

    @classmethod
    def current(cls) -> "Convention":
        """The convention of this process: its x64 flag and default backend."""
        backend = jax.default_backend()
        platforms = ("cpu",) if backend == "cpu" else ("cpu", backend)
        return cls(bool(jax.config.jax_enable_x64), platforms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"x64": self.x64, "platforms": list(self.platforms)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Convention":
        """Inverse of :meth:`to_dict`."""
        return cls(bool(d["x64"]), tuple(str(p) for p in d["platforms"]))


def sha256(data: bytes) -> str:
    """Hex SHA-256 of an artefact."""
    return hashlib.sha256(data).hexdigest()


def export_mask(raw: MaskFn, task: MaskTask, convention: Convention) -> bytes:
    """Trace ``raw`` (one environment) under the calling convention and serialise it.

    Must run under ``convention.x64`` (the sandbox child sets it). Errors are the program's own
    (tracing under ``vmap`` with a symbolic batch axis) and are raised as they come.
    """
    (b,) = jax.export.symbolic_shape("b")

    def batched(fields: dict[str, jax.Array], action_space: jax.Array) -> jax.Array:
        return jax.vmap(raw, in_axes=(0, None))(MaskContext(fields), action_space)

    fields = {f.name: jax.ShapeDtypeStruct((b, *f.shape), np.dtype(f.dtype)) for f in task.fields}
    act = jax.ShapeDtypeStruct((task.n_actions,), np.dtype(ACTION_DTYPE))
    exported = jax.export.export(jax.jit(batched), platforms=convention.platforms)(fields, act)
    return bytes(exported.serialize())


class ExportedMask:
    """A checked mask program as the trainer runs it: a deserialised ``jax.export`` artefact.

    ``fn(ctx, action_space)`` takes contexts with any leading batch axes (none for one
    environment) and returns ``bool [*batch, *agent_shape, A]`` (``fallback_empty_rows`` of the
    artefact's output, :meth:`raw`). It is ``batched``: call it on batched contexts directly
    (``call_exported`` has no ``vmap`` rule).

    Attributes:
        data: the serialised artefact; ``sha256``: its hash; ``mask_name``: for messages.
    """

    batched = True

    def __init__(self, exported: Any, data: bytes, digest: str, task: MaskTask) -> None:
        self.exported, self.data, self.sha256 = exported, data, digest
        self.fields = tuple((f.name, f.shape, np.dtype(f.dtype)) for f in task.fields)
        self.out_shape = task.out_shape
        self.mask_name = f"exported mask {digest[:12]}"
        self.__name__ = "exported_mask"

    def __call__(self, ctx: Any, action_space: Any) -> jax.Array:
        """The bool masks of contexts ``ctx`` (no agent without an allowed action)."""
        return fallback_empty_rows(self.raw(ctx, action_space))

    def raw(self, ctx: Any, action_space: Any) -> jax.Array:
        """The artefact's own output on ``ctx`` (a MaskContext or mapping; extra fields are
        ignored, the others cast to their checked dtypes)."""
        get = ctx.__getitem__ if isinstance(ctx, Mapping) else lambda name: getattr(ctx, name)
        batch: tuple[int, ...] | None = None
        fields = {}
        for name, shape, dtype in self.fields:
            x = jnp.asarray(get(name))
            nb = x.ndim - len(shape)
            if nb < 0 or tuple(x.shape[nb:]) != shape or batch not in (None, x.shape[:nb]):
                raise ValueError(
                    f"{self.mask_name}: ctx.{name} has shape {x.shape}; expected "
                    f"[batch..., {', '.join(map(str, shape))}] with the batch axes of the others"
                )
            batch = tuple(x.shape[:nb])
            fields[name] = x.astype(dtype).reshape((int(np.prod(batch)), *shape))
        assert batch is not None, "a mask task has at least one field"
        out = self.exported.call(fields, jnp.asarray(action_space, ACTION_DTYPE))
        return out.reshape((*batch, *self.out_shape))

    def __repr__(self) -> str:
        return f"<{self.mask_name}>"


def load_exported(
    data: bytes, task: MaskTask, *, digest: str | None = None, x64: bool | None = None
) -> ExportedMask:
    """Deserialise and verify an artefact of :func:`export_mask` for ``task``.

    Checks the hash (when ``digest`` is given), that it was exported under this process's x64
    flag (``x64``: the flag recorded at export), and the module itself: one device, no
    effects, this process's platform, the task's inputs and output, and no custom call but
    jax.export's shape assertions (no host callbacks, no infeed/outfeed/send/recv).

    Raises:
        ArtefactError: one line naming what is wrong and the fix.
    """
    redo = "delete the artefact (mask.jaxexport) to check the candidate again"
    if digest is not None and sha256(data) != digest:
        raise ArtefactError(f"the artefact's SHA-256 is not the recorded {digest[:12]}...; {redo}")
    if x64 is not None and x64 != bool(jax.config.jax_enable_x64):
        raise ArtefactError(
            f"the artefact was exported with jax_enable_x64={x64} but this process runs with "
            f"{bool(jax.config.jax_enable_x64)}; run with the same precision or {redo}"
        )
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as err:  # flatbuffer / MLIR errors of several types
        raise ArtefactError(f"the artefact cannot be deserialised ({type(err).__name__}); {redo}")
    _verify(exported, task, redo)
    return ExportedMask(exported, bytes(data), digest or sha256(data), task)


def _verify(exported: Any, task: MaskTask, redo: str) -> None:
    problems = []
    if exported.nr_devices != 1:
        problems.append(f"it is made for {exported.nr_devices} devices")
    if exported.ordered_effects or exported.unordered_effects:
        problems.append("it has side effects")
    if jax.default_backend() not in exported.platforms:
        problems.append(f"it is made for {'/'.join(exported.platforms)}, not this platform")
    fields = sorted(task.fields, key=lambda f: f.name)  # a dict's leaves: sorted by key
    tree = jax.tree_util.tree_structure((({f.name: 0 for f in fields}, 0), {}))
    avals = list(exported.in_avals)
    inputs_ok = (
        exported.in_tree == tree
        and len(avals) == len(fields) + 1
        and all(
            len(a.shape) == len(f.shape) + 1
            and tuple(a.shape[1:]) == f.shape
            and a.dtype == np.dtype(f.dtype)
            for a, f in zip(avals, fields)
        )
        and tuple(avals[-1].shape) == (task.n_actions,)
        and avals[-1].dtype == np.dtype(ACTION_DTYPE)
    )
    if not inputs_ok:
        problems.append("its inputs are not the task's context fields and action_space")
    outs = exported.out_avals
    if (
        len(outs) != 1
        or tuple(outs[0].shape[1:]) != task.out_shape
        or np.dtype(outs[0].dtype).kind not in "biuf"
    ):
        problems.append(f"its output is not one [b, {', '.join(map(str, task.out_shape))}] array")
    text = exported.mlir_module()
    calls = {a or b for a, b in _CUSTOM_CALL.findall(text)} - ALLOWED_CUSTOM_CALLS
    if calls:
        problems.append(f"it contains custom calls {sorted(calls)}")
    if _BANNED_OPS.search(text):
        problems.append("it contains infeed/outfeed/send/recv operations")
    if problems:
        raise ArtefactError(f"the artefact does not match the mask task: {problems[0]}; {redo}")
