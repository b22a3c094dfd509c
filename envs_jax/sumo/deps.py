"""Checks for the optional SUMO packages, with one clear error naming the fix.

Nothing here imports SUMO: it only asks whether the packages are installed, so the registry can
list SUMO scenarios on machines without SUMO and fail only when an environment is built.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

INSTALL_HINT = 'pip install -e ".[sumo]"'


class SumoNotInstalledError(ImportError):
    """A SUMO package or command-line tool is missing."""


def require(*modules: str) -> None:
    """Raise :class:`SumoNotInstalledError` unless every named module can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SumoNotInstalledError(
            f"SUMO support needs the package(s) {', '.join(missing)}, which are not installed; "
            f"run {INSTALL_HINT}"
        )


def package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it (e.g. ``sumo_rl``)."""
    require(module)
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def sumo_home() -> Path:
    """The ``sumo`` package directory of the eclipse-sumo wheel (its ``bin/`` holds the tools)."""
    return package_dir("sumo")


def tool(name: str) -> Path:
    """Path of a SUMO command-line tool (``netgenerate``, ``netconvert``, ``sumo``)."""
    path = sumo_home() / "bin" / name
    if not path.is_file():
        raise SumoNotInstalledError(
            f"the SUMO tool {name!r} is missing from {path.parent}; run {INSTALL_HINT}"
        )
    return path


def run_tool(name: str, args: list[str], cwd: str | os.PathLike | None = None) -> None:
    """Run a SUMO tool; raise ``RuntimeError`` with its last output lines when it fails."""
    env = dict(os.environ)
    home = sumo_home()
    env.setdefault("SUMO_HOME", str(home))
    env.setdefault("PROJ_LIB", str(home / "data" / "proj"))
    proc = subprocess.run(
        [str(tool(name)), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {tail}")
