"""Sharding of K learners (and their environments) over several devices.

The learner axis K is split over a mesh axis ``"k"``; when K is smaller than (or does not divide)
the device count, the remaining devices split the environment axis E over a mesh axis ``"e"``.
Learner-level leaves ``[K, ...]`` get ``P("k")``, environment-level leaves ``[K, E, ...]`` get
``P("k", "e")`` and rollout buffers ``[T, K, E, ...]`` get ``P(None, "k", "e")``. Computation is
left to XLA's partitioner: the jitted programs are the same as on one device.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

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
    return Mesh(np.array(devices[: k_dev * e_dev]).reshape(k_dev, e_dev), ("k", "e"))


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
