"""The restricted namespace a validated mask program runs in, and the one place it is executed.

A program that passed :func:`espark_jax.masks.static.validate_source` holds only ``def``
statements; :func:`exec_program` runs them with no builtins but the allow-listed few and with
``jnp`` / ``np`` / ``numpy`` bound to a read-only, allow-listed view of ``jax.numpy``.
"""

from __future__ import annotations

import ast
import builtins
import types
from typing import Any

import jax.numpy as jnp

from espark_jax.masks.rules import ALLOWED_BUILTINS, ARRAY_MODULE_NAMES, JNP_ALLOWED
from espark_jax.masks.safe import MaskFn
from espark_jax.masks.task import MaskTask


class ArrayNamespace:
    """A read-only view of ``jax.numpy`` holding only the allow-listed names (jnp, np, numpy)."""

    __slots__ = ("_members",)

    def __init__(self, names: frozenset[str] = JNP_ALLOWED) -> None:
        members = {n: getattr(jnp, n) for n in sorted(names) if hasattr(jnp, n)}
        object.__setattr__(self, "_members", types.MappingProxyType(members))

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_members")[name]
        except KeyError:
            raise AttributeError(f"jnp.{name} is not available in mask programs") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the jnp namespace is read-only")

    def __dir__(self) -> list[str]:
        return list(object.__getattribute__(self, "_members"))

    def __repr__(self) -> str:
        return "<allow-listed jax.numpy>"


_ARRAY_NAMESPACE = ArrayNamespace()
_BUILTINS = {name: getattr(builtins, name) for name in sorted(ALLOWED_BUILTINS)}


def exec_program(module: ast.Module, task: MaskTask) -> MaskFn:
    """Execute a module returned by ``validate_source`` in the restricted namespace.

    Only ``def`` statements run here (the validator allows nothing else at top level); returns the
    raw (unwrapped) function named ``task.function_name``.
    """
    namespace: dict[str, Any] = {"__builtins__": dict(_BUILTINS), "__name__": "mask_program"}
    namespace.update({name: _ARRAY_NAMESPACE for name in ARRAY_MODULE_NAMES})
    exec(compile(module, "<mask>", "exec"), namespace)  # validated code, restricted namespace
    return namespace[task.function_name]
