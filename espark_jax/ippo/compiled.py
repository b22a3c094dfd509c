"""Jitted programs compiled ahead of time, with their compile seconds and trace counts logged.

Every program a trainer runs goes through :class:`TimedJit`, so ``compile_seconds`` shows what
was compiled and how long it took, and :class:`ProgramLog` counts traces (a retrace is a bug
the tests look for).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


class ProgramLog:
    """Compile seconds per program name and trace counts per program name."""

    def __init__(self, counted: tuple[str, ...] = ("rollout", "update")) -> None:
        self.compile_seconds: dict[str, list[float]] = {}
        self.trace_counts: dict[str, int] = {name: 0 for name in counted}

    def counter(self, name: str) -> Callable[[], None]:
        """A callback to call at trace time of the program ``name``."""

        def bump() -> None:
            self.trace_counts[name] = self.trace_counts.get(name, 0) + 1

        return bump


class TimedJit:
    """``jax.jit`` compiled ahead of time per input signature; compile time logged as ``name``.

    ``compiler_options`` are XLA debug options for this program only (e.g.
    ``{"xla_backend_optimization_level": 2}``), passed to ``Lowered.compile``.
    """

    def __init__(
        self,
        fn: Callable,
        name: str,
        log: ProgramLog,
        donate: tuple[int, ...] = (),
        compiler_options: dict[str, Any] | None = None,
    ) -> None:
        self.jitted = jax.jit(fn, donate_argnums=donate)
        self._name, self._log = name, log
        self.compiler_options = dict(compiler_options) if compiler_options else None
        self._executables: dict[Any, Any] = {}

    def __call__(self, *args: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        sig = (
            treedef,
            tuple((np.shape(x), _dtype(x), getattr(x, "sharding", None)) for x in leaves),
        )
        exe = self._executables.get(sig)
        if exe is None:
            start = time.perf_counter()
            exe = self.jitted.lower(*args).compile(self.compiler_options)
            self._log.compile_seconds.setdefault(self._name, []).append(time.perf_counter() - start)
            self._executables[sig] = exe
        return exe(*args)


def _dtype(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return np.asarray(x).dtype
    return dtype, bool(getattr(x, "weak_type", False))
