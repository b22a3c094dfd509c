"""The house rules the code keeps: small modules, one-way imports, no private names across
modules, and a tree that ruff (line length 100) passes as it stands."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("espark_jax", "envs_jax")
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every absolute ``from ... import`` / ``import``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
    return out


def test_no_module_of_the_package_is_over_450_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_no_private_name_is_imported_across_modules():
    bad = []
    for path in _modules():
        for module, names, line in _imports(path):
            if module.split(".")[0] in PACKAGES:
                bad += [
                    f"{path.relative_to(ROOT)}:{line} {module}.{n}"
                    for n in names
                    if n.startswith("_")
                ]
    assert not bad, f"private names imported from another module: {bad}"


def test_envs_jax_never_imports_espark_jax():
    bad = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in sorted((ROOT / "envs_jax").rglob("*.py"))
        for module, _, line in _imports(p)
        if module.split(".")[0] == "espark_jax"
    ]
    assert not bad, f"envs_jax must not import espark_jax: {bad}"


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return [exe]


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"]
)
def test_ruff_passes_on_the_whole_tree(args):
    proc = subprocess.run(_ruff() + args, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
