"""Sharding of K learners (and their environments) over several devices.

The learner axis K is split over a mesh axis ``"k"``; when K is smaller than (or does not divide)
the device count, the remaining devices split the environment axis E over a mesh axis ``"e"``.
Learner-level leaves ``[K, ...]`` get ``P("k")``, environment-level leaves ``[K, E, ...]`` get
``P("k", "e")`` and rollout buffers ``[T, K, E, ...]`` get ``P(None, "k", "e")``. Computation is
left to XLA's partitioner: the jitted programs are the same as on one device.

In a ``jax.distributed`` job (several processes, :mod:`espark_jax.distributed`) the mesh takes
devices of every process, so the arrays of a learner state span processes. What the host reads
goes through :func:`fetch` (every process gets the whole value), and :func:`per_process` lets
each process evaluate the learners it holds, then shares the results.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def mesh_shape(n_learners: int, n_envs: int, n_devices: int) -> tuple[int, int]:
    """Devices along ``k`` and ``e``: ``gcd(K, n_devices)`` for learners, then as many of the rest
    as divide E for environments (devices that fit neither stay idle)."""
    k_dev = math.gcd(n_learners, n_devices)
    return k_dev, math.gcd(n_envs, n_devices // k_dev)


def make_mesh(n_learners: int, n_envs: int, devices: Sequence[Any] | None = None) -> Mesh | None:
    """A ``("k", "e")`` mesh for K learners x E environments (``None`` for a single device)."""
    devices = list(devices if devices is not None else jax.devices())
    k_dev, e_dev = mesh_shape(n_learners, n_envs, len(devices))
    if k_dev * e_dev == 1:
        return None
    chosen = spread_devices(devices, k_dev * e_dev)
    return Mesh(np.array(chosen).reshape(k_dev, e_dev), ("k", "e"))


def spread_devices(devices: Sequence[Any], n: int) -> list[Any]:
    """``n`` of ``devices``: the first ``n`` in one process; over several processes, as many of
    each process (in process order) so that every process holds part of the mesh.

    Raises:
        ValueError: one line, when ``n`` devices cannot give every process a share.
    """
    by_process: dict[int, list[Any]] = {}
    for d in devices:
        by_process.setdefault(d.process_index, []).append(d)
    n_proc = len(by_process)
    if n_proc == 1:
        return list(devices[:n])
    per = n // n_proc
    if n % n_proc or any(len(ds) < per for ds in by_process.values()):
        raise ValueError(
            f"K x E fills {n} devices, which cannot be shared by {n_proc} processes; choose K or "
            f"the environments per learner so that a multiple of {n_proc} devices is used"
        )
    return [d for p in sorted(by_process) for d in by_process[p][:per]]


def describe_mesh(mesh: Mesh | None) -> str:
    """One line: how learners and environments are spread over devices."""
    if mesh is None:
        return "single device"
    shape = f"mesh k={mesh.shape['k']} x e={mesh.shape['e']}"
    return f"{shape} over {mesh.devices.size} of {len(jax.devices())} devices"


def _spec(x: Any, lead: tuple) -> P:
    ndim = getattr(x, "ndim", 0)
    return P(*lead[: min(ndim, len(lead))])


def learner_shardings(tree: Any, mesh: Mesh) -> Any:
    """``NamedSharding`` for every leaf of a learner-level pytree (leading K axis)."""
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, _spec(x, ("k",))), tree)


def env_shardings(tree: Any, mesh: Mesh) -> Any:
    """``NamedSharding`` for every leaf of an environment-level pytree (leading ``K, E`` axes)."""
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, _spec(x, ("k", "e"))), tree)


def buffer_shardings(tree: Any, mesh: Mesh) -> Any:
    """``NamedSharding`` for every leaf of a rollout buffer (leading ``T, K, E`` axes)."""
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, _spec(x, (None, "k", "e"))), tree)


def constrain(tree: Any, shardings: Any | None) -> Any:
    """``with_sharding_constraint`` when ``shardings`` is given (inside jit), identity otherwise."""
    if shardings is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, shardings)


# ---------------------------------------------------------------- arrays over several processes
def spans_processes(tree: Any) -> bool:
    """Whether a leaf of ``tree`` is an array with shards in other processes."""
    leaves = jax.tree_util.tree_leaves(tree)
    return any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves)


def fetch(tree: Any) -> Any:
    """A host (numpy) copy of ``tree``; arrays that span processes are gathered from all of
    them (a collective: when the tree spans processes, every process must call it)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    spread = [i for i, x in enumerate(leaves) if spans_processes(x)]
    if spread:
        from jax.experimental import multihost_utils

        whole = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
        for i, x in zip(spread, whole):
            leaves[i] = x
    return jax.device_get(treedef.unflatten(leaves))


def host_local(tree: Any) -> Any:
    """``tree`` itself, or its host copy (:func:`fetch`) when it spans processes."""
    return fetch(tree) if spans_processes(tree) else tree


def allgather_json(obj: Any) -> list[Any]:
    """Every process's JSON-ready ``obj``, in process order (a collective)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32)))
    sizes = sizes.reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(sizes.size, -1)
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, sizes)]


def local_learners(params: Any) -> tuple[list[int], Any]:
    """The learners (rows of the K axis) held by this process: their indices and ``params``
    restricted to them, sharded over one local device per block of learners."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    n_k = leaves[0].shape[0]
    blocks: dict[tuple[int, int], Any] = {}
    for s in leaves[0].addressable_shards:
        start, stop, _ = s.index[0].indices(n_k)
        blocks.setdefault((start, stop), s.device)
    order = sorted(blocks)
    devices = [blocks[b] for b in order]
    sharding = NamedSharding(Mesh(np.array(devices), ("k",)), P("k"))
    local = []
    for x in leaves:
        on = {s.device: s for s in x.addressable_shards}
        parts = []
        for (start, stop), d in zip(order, devices):
            first = on[d].index[0].indices(n_k)[0] if on[d].index else 0
            parts.append(on[d].data[start - first : stop - first])
        shape = (sum(b - a for a, b in order),) + x.shape[1:]
        local.append(jax.make_array_from_single_device_arrays(shape, sharding, parts))
    rows = [k for a, b in order for k in range(a, b)]
    return rows, treedef.unflatten(local)


def per_process(evaluate: Callable[..., dict], params: Any) -> Callable[..., dict]:
    """``evaluate`` itself, or, when ``params`` span processes, a version in which every process
    evaluates the learners it holds (:func:`local_learners`, the same per-device program as the
    whole mesh) and the per-learner lists of the results are shared (:func:`allgather_json`)."""
    if not spans_processes(params):
        return evaluate

    def spread(params, key, split, greedy, num_envs, masked, **options):
        if masked:
            raise ValueError(
                "masked evaluation of learners spread over processes is not supported; "
                "evaluate without masks or in one process"
            )
        rows, local = local_learners(params)
        result = evaluate(local, key, split, greedy, num_envs, masked, **options)
        n_k = jax.tree_util.tree_leaves(params)[0].shape[0]
        return _merge(allgather_json([rows, result]), n_k)

    return spread


def _merge(parts: list[Any], n_k: int) -> Any:
    """Per-learner lists of ``[[rows, result], ...]`` put together into lists of length K."""
    first = parts[0][1]
    if isinstance(first, dict):
        return {name: _merge([[rows, res[name]] for rows, res in parts], n_k) for name in first}
    if isinstance(first, list):
        out: list[Any] = [None] * n_k
        for rows, values in parts:
            for k, v in zip(rows, values):
                out[k] = v
        return out
    return first
