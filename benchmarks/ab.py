"""A/B runs against an earlier commit: the same script, the old and the new tree, side by side.

:func:`baseline_tree` checks a commit out into a temporary git worktree (its files only, this
checkout's virtual environment); :func:`run_json` runs one benchmark script of a tree in a fresh
subprocess with ``PYTHONPATH`` pointing at that tree and returns the JSON it wrote.
:func:`interleave` rotates the arms round by round, so load on a shared machine hits all alike.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def baseline_tree(rev: str) -> Path:
    """A worktree of commit ``rev`` (removed at exit); exits with one line for a bad ``rev``."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if sha.returncode:
        raise SystemExit(f"--baseline {rev!r} is not a commit of {ROOT}")
    path = Path(tempfile.mkdtemp(prefix="espark-baseline-")) / "tree"
    subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "worktree",
            "add",
            "--detach",
            "-q",
            str(path),
            sha.stdout.strip(),
        ],
        check=True,
    )

    def remove() -> None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)])
        shutil.rmtree(path.parent, ignore_errors=True)

    atexit.register(remove)
    return path


def run_json(tree: Path, script: str, args: list[str], timeout: float = 3600.0) -> dict[str, Any]:
    """Run ``tree/script args --out TMP`` in a fresh process and return the JSON it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(tree), "ESPARK_COMPILE_CACHE": "0"}
        cmd = [sys.executable, str(tree / script), *args, "--out", str(out)]
        proc = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode or not out.is_file():
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def interleave(rounds: int, arms: dict[str, Callable[[], Any]]) -> dict[str, list]:
    """``rounds`` of every arm, the order rotating each round; returns each arm's results."""
    names = list(arms)
    got: dict[str, list] = {n: [] for n in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            got[name].append(arms[name]())
            print(f"  round {i + 1}/{rounds}: {name} done", flush=True)
    return got
