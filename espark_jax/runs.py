"""Run directories: manifest, per-(iteration, slot) records, learner checkpoints, resume.

Layout of ``runs/<name>/``::

    manifest.json          config, provider, models, versions, prompt hashes, scenario, data
    run.jsonl              one JSON line per event (iterations, final evaluation)
    iter_XX/
      cand_KK/             generator.json, repair_rN.json, checker.json (LLM records = replay
                           data), code.py, check.json (verdict + mask statistics, the export's
                           hash and check key, the sandbox's active protections),
                           mask.jaxexport (the checked program as serialised jax.export bytes:
                           what the trainer ran; --resume and replay reuse it), metrics.json
      metrics.jsonl        training / evaluation lines of the K learners
      summary.json         written last: scores, best slot, feedback -> the iteration is done
      best/                orbax checkpoint of the best learner (params + optimizer state)
      control/             checkpoint of the plain IPPO control learner (when the run has one)
    results.json           final test-split evaluation of the surviving learner
    traces.json            the test episode day by day, for figures (espark_jax.traces)
    summary.png            the loop summary figure (summary.csv: its numbers)

Every file is written atomically (temporary file + rename), so a run killed at any moment leaves
either the old or the new version of a file, and ``--resume`` trusts exactly the iterations whose
``summary.json`` and checkpoint exist.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax

from espark_jax.checkpoints import CheckpointError, restore_tree, save_tree

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
BEST = "best"
CONTROL = "control"
ARTEFACT = "mask.jaxexport"


class RunDirError(RuntimeError):
    """A run directory is missing, corrupt or belongs to a different configuration."""


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "espark-jax",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "anthropic",
        "libsumo",
    ):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """The JAX backend and devices this process runs on."""
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devs],
        "count": len(devs),
        "kind": devs[0].device_kind if devs else None,
        "host": platform.node(),
        "cpus": os.cpu_count(),
    }


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically; NaN becomes null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(_clean(obj), indent=1, ensure_ascii=False, default=str), encoding="utf-8"
    )
    os.replace(tmp, path)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a binary file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def recorded_checks(
    roots: Sequence[str | os.PathLike],
) -> Callable[[str], tuple[Mapping[str, Any], bytes] | None]:
    """A lookup of the accepted checks recorded under ``roots`` (run directories: this run, a
    replayed one) by check key (``compile.stats.export.key`` of each ``check.json``): the
    recorded result and its artefact bytes, for :func:`espark_jax.masks.check_candidates`."""
    index: dict[str, tuple[Mapping[str, Any], Path]] = {}
    for root in roots:
        for path in sorted(Path(root).glob("iter_*/cand_*/check.json")):
            try:
                result = json.loads(path.read_text(encoding="utf-8")).get("compile") or {}
            except (OSError, ValueError, AttributeError):
                continue
            key = ((result.get("stats") or {}).get("export") or {}).get("key")
            if result.get("ok") and key and (path.parent / ARTEFACT).is_file():
                index.setdefault(key, (result, path.parent / ARTEFACT))

    def lookup(key: str) -> tuple[Mapping[str, Any], bytes] | None:
        hit = index.get(key)
        return None if hit is None else (hit[0], hit[1].read_bytes())

    return lookup


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; :class:`RunDirError` naming the file when it is missing or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path} is unreadable ({err}); delete it to redo that step") from None


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return obj


class RunDir:
    """One eSpark run on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def create(cls, path: str | os.PathLike, manifest: dict[str, Any]) -> "RunDir":
        """Make a new run directory and write its manifest; refuses to overwrite a run."""
        run = cls(path)
        if (run.path / MANIFEST).exists():
            raise RunDirError(
                f"{run.path} already holds a run; continue it with --resume {run.path} or "
                "choose another --name"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        manifest = {
            **manifest,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": package_versions(),
            "device": device_info(),
            "argv": sys.argv,
        }
        write_json(run.path / MANIFEST, manifest)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """Open an existing run; :class:`RunDirError` when it is not a readable run directory."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"--resume {path}: no such run directory")
        manifest = read_json(run.path / MANIFEST)
        if not isinstance(manifest, dict) or "config" not in manifest:
            raise RunDirError(
                f"{run.path / MANIFEST} has no 'config'; this is not an espark run directory"
            )
        return run

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as written at creation (plus later updates)."""
        return read_json(self.path / MANIFEST)

    def update_manifest(self, **fields: Any) -> None:
        """Add or replace top-level manifest fields."""
        write_json(self.path / MANIFEST, {**self.manifest, **fields})

    # ------------------------------------------------------------------ paths and records
    def iter_dir(self, iteration: int) -> Path:
        """``iter_XX`` (iterations are numbered from 1)."""
        return self.path / f"iter_{iteration:02d}"

    def cand_dir(self, iteration: int, slot: int) -> Path:
        """``iter_XX/cand_KK``."""
        return self.iter_dir(iteration) / f"cand_{slot:02d}"

    def log(self, record: dict[str, Any]) -> None:
        """Append one event to ``run.jsonl``."""
        with open(self.path / "run.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean({"time": time.time(), **record}), default=str) + "\n")

    # ------------------------------------------------------------------ iterations
    def iteration_summary(self, iteration: int) -> dict[str, Any] | None:
        """The summary of a finished iteration, or None when it did not finish (or is corrupt)."""
        path = self.iter_dir(iteration) / SUMMARY
        if not path.exists():
            return None
        summary = read_json(path)
        if not (self.iter_dir(iteration) / BEST).is_dir():
            raise RunDirError(
                f"{self.iter_dir(iteration)} has a summary but no '{BEST}' checkpoint; "
                f"delete {path} to redo iteration {iteration}"
            )
        return summary

    def finished_iterations(self) -> list[int]:
        """Consecutive finished iterations from 1 (a gap ends the list)."""
        done = []
        i = 1
        while self.iteration_summary(i) is not None:
            done.append(i)
            i += 1
        return done

    def discard_unfinished(self, iteration: int) -> None:
        """Remove partial training output of an unfinished iteration (LLM records are kept)."""
        d = self.iter_dir(iteration)
        for name in ("metrics.jsonl", BEST, CONTROL, SUMMARY):
            p = d / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        for cand in d.glob("cand_*"):
            for name in ("metrics.json",):
                if (cand / name).exists():
                    (cand / name).unlink()

    # ------------------------------------------------------------------ candidate records
    def write_check(
        self,
        iteration: int,
        slot: int,
        code: str | None,
        check: dict,
        artefact: bytes | None = None,
    ) -> None:
        """A candidate's checked code (``code.py``, when there is code), its exported artefact
        (:data:`ARTEFACT`, when it passed) and ``check.json``."""
        d = self.cand_dir(iteration, slot)
        if code:
            write_text(d / "code.py", code.rstrip("\n") + "\n")
        if artefact is not None:
            write_bytes(d / ARTEFACT, artefact)
        elif (d / ARTEFACT).exists():
            (d / ARTEFACT).unlink()
        write_json(d / "check.json", check)

    def read_code(self, iteration: int, slot: int) -> str | None:
        """A candidate's recorded code (as compiled), or None when it has none."""
        path = self.cand_dir(iteration, slot) / "code.py"
        return path.read_text(encoding="utf-8").rstrip("\n") + "\n" if path.is_file() else None

    def write_candidate_metrics(self, iteration: int, slot: int, metrics: dict) -> None:
        """A candidate's training metrics (``metrics.json``)."""
        write_json(self.cand_dir(iteration, slot) / "metrics.json", metrics)

    def train_returns(self, iteration: int, k: int) -> list[list[float | None]]:
        """Per slot, the training returns of every chunk recorded in ``metrics.jsonl``."""
        curves: list[list[float | None]] = [[] for _ in range(k)]
        path = self.iter_dir(iteration) / "metrics.jsonl"
        if not path.exists():
            return curves
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "train" and rec.get("train_return") is not None:
                for slot, v in enumerate(rec["train_return"]):
                    curves[slot].append(v)
        return curves

    def write_summary(self, iteration: int, summary: dict) -> None:
        """``summary.json``, written last: from now on the iteration counts as finished."""
        write_json(self.iter_dir(iteration) / SUMMARY, summary)

    # ------------------------------------------------------------------ checkpoints
    def save_learner(self, iteration: int, learner: Any, name: str = BEST) -> Path:
        """Save one learner (params and optimizer state) through the one checkpoint writer:
        ``iter_XX/best`` (the selected candidate) or ``iter_XX/control``."""
        return save_tree(self.iter_dir(iteration) / name, learner)

    def load_learner(self, iteration: int, like: Any, name: str = BEST) -> Any:
        """Restore a learner saved for ``iteration``; ``like`` gives structure and shapes."""
        redo = f"delete {self.iter_dir(iteration) / SUMMARY} to redo iteration {iteration}"
        try:
            return restore_tree(self.iter_dir(iteration) / name, like)
        except CheckpointError as err:
            raise RunDirError(f"{err}; {redo}") from None
