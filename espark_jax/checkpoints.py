"""The one checkpoint writer: pytrees of arrays saved with orbax, atomically, and restored.

A checkpoint is written into ``<path>.partial`` and renamed into place when complete, so a run
killed while saving leaves either the previous checkpoint or none, never half of one. Learners
(``{"params", "opt_state"}``) of the eSpark loop and of ``espark train`` go through here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import jax


class CheckpointError(RuntimeError):
    """A checkpoint is missing or cannot be restored into the expected structure."""


def save_tree(path: str | os.PathLike, tree: Any) -> Path:
    """Save a pytree of arrays at ``path`` (a directory), replacing what was there atomically."""
    path = Path(path).resolve()
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = _checkpointer()
    ckpt.save(tmp, tree)
    ckpt.wait_until_finished()
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def _checkpointer() -> Any:
    """Orbax's checkpointer; in a multi-process job, one for this process alone (process 0
    writes host-local trees there, :mod:`espark_jax.distributed`), so orbax waits for no other."""
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=alone)


def restore_tree(path: str | os.PathLike, like: Any) -> Any:
    """Restore the checkpoint at ``path``; ``like`` gives structure, shapes and dtypes.

    Raises:
        CheckpointError: one line naming the path when it is missing or does not match.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is missing")
    # onto this process's first device, whatever devices saved it (another machine, mesh, job)
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), like
    )
    try:
        return _checkpointer().restore(path, target)
    except Exception as err:  # orbax raises several types for damaged or mismatched checkpoints
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} cannot be restored ({type(err).__name__}: {first})"
        ) from None
