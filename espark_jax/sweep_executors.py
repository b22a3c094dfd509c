"""Executors of ``espark sweep``: the runs one after another here, or as tasks on a Ray cluster.

Both run every (variant, seed) through :func:`run_one`, which starts the run in its directory or,
when the directory already holds a manifest (an attempt that was killed, a worker that died),
continues it with ``--resume`` semantics. Each attempt appends a ``start`` and a ``finish`` line
to ``<sweep-dir>/attempts/<run>.jsonl`` (process, host, whether it resumed).

* :class:`LocalExecutor` (the default): one run after another in this process; needs no Ray.
* :class:`RayExecutor` (``--executor ray``, the ``cluster`` extra): one Ray task per run with
  its resource request (``--cpus-per-run``, ``--gpus-per-run``), each in a fresh worker process;
  a task whose worker dies or that raises is retried (``--retries``) and resumes from its run
  directory. The driver prints one line per finished run under an overall progress bar; a run's
  own output goes to ``<sweep-dir>/attempts/<run>.log``. Run directories must be on a file
  system every node of the cluster sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

ATTEMPTS = "attempts"
INSTALL_HINT = "pip install -e '.[cluster]'"


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its place (1-based), name, directory, configuration
    (``SearchConfig.to_dict()``) and, for a pruning-baseline run, its variant
    (:mod:`espark_jax.pruning_run`)."""

    index: int
    name: str
    path: Path
    config: dict[str, Any]
    pruning: str | None = None


class SweepError(RuntimeError):
    """Runs of a sweep failed (the message names them and the fix)."""


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def attempts(root: str | os.PathLike, name: str) -> list[dict[str, Any]]:
    """The ``start`` / ``finish`` records of every attempt at run ``name`` of the sweep."""
    path = Path(root) / ATTEMPTS / f"{name}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_one(
    name: str,
    path: str | os.PathLike,
    config: dict[str, Any],
    root: str | os.PathLike,
    *,
    progress: bool = True,
    quiet: bool = False,
    pruning: str | None = None,
) -> dict[str, Any]:
    """Start run ``name`` in ``path`` or resume it there (when it holds a manifest); with
    ``quiet`` its output goes to ``<root>/attempts/<name>.log``; with ``pruning`` it is that
    pruning-baseline run (an unfinished one starts again). Returns ``{"name", "attempt",
    "resumed", "seconds", "host", "pid", "test_return"}`` (test return of the greedy policy)."""
    from espark_jax.cli_search import execute_run
    from espark_jax.pruning_run import run_pruning
    from espark_jax.search_config import SearchConfig

    path = Path(path)
    log = Path(root) / ATTEMPTS / f"{name}.jsonl"
    resumed = (path / "manifest.json").is_file()
    attempt = 1 + sum(r["event"] == "start" for r in attempts(root, name))
    where = {"attempt": attempt, "pid": os.getpid(), "host": platform.node()}
    _append(log, {"event": "start", **where, "resumed": resumed, "time": time.time()})
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if quiet:
            out = stack.enter_context(open(log.with_suffix(".log"), "a", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        if pruning:
            results = run_pruning(SearchConfig(**config), pruning, path, progress=progress)
        elif resumed:
            results = execute_run(None, path, resume=True, progress=progress)
        else:
            results = execute_run(SearchConfig(**config), path, resume=False, progress=progress)
    seconds = time.perf_counter() - start
    _append(log, {"event": "finish", **where, "seconds": seconds, "time": time.time()})
    test_return = results["test"]["greedy"]["return"]
    return {
        "name": name,
        **where,
        "resumed": resumed,
        "seconds": seconds,
        "test_return": test_return,
    }


class LocalExecutor:
    """Every run in turn in this process (the default executor)."""

    def run(self, runs: Sequence[SweepRun], root: Path, total: int, progress: bool) -> None:
        """Run them; the first failure propagates (the same command again resumes)."""
        for r in runs:
            print(f"\n=== sweep {r.index}/{total}: {r.name} ({r.path}) ===")
            run_one(r.name, r.path, r.config, root, progress=progress, pruning=r.pruning)


def _ray_task(
    name: str,
    path: str,
    config: dict[str, Any],
    root: str,
    gpus: float,
    pruning: str | None = None,
) -> dict:
    """One run as a Ray task (a fresh worker process: JAX is not imported yet)."""
    if 0 < gpus < 1:  # several runs share a GPU: none may take most of its memory
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 * gpus:.2f}")
    try:
        return run_one(name, path, config, root, progress=False, quiet=True, pruning=pruning)
    except SystemExit as err:  # a one-line input error: retrying cannot help
        return {"name": name, "error": str(err)}


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ``SystemExit`` naming the install command."""
    try:
        import ray
    except ImportError:
        raise SystemExit(f"espark sweep: --executor ray needs Ray: {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """Each run as a Ray task (see the module doc).

    Args:
        address: the cluster to join (``ray.init(address=...)``); None: an initialised Ray, else
            ``RAY_ADDRESS`` or a cluster started on this machine with ``ray start``, else a new
            local one.
        cpus_per_run, gpus_per_run: the resource request of each run's task.
        retries: how often a run is retried after its task or worker failed.
    """

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        retries: int = 2,
    ) -> None:
        self.ray = import_ray()
        self.address, self.cpus, self.gpus, self.retries = (
            address,
            cpus_per_run,
            gpus_per_run,
            retries,
        )

    def connect(self) -> None:
        """Join the cluster unless Ray is initialised already; one-line error when it fails."""
        if self.ray.is_initialized():
            return
        try:
            self.ray.init(address=self.address, log_to_driver=False)
        except Exception as err:  # ConnectionError, ValueError, RuntimeError from Ray's startup
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise SystemExit(
                f"espark sweep: cannot reach the Ray cluster at {self.address or 'auto'} "
                f"({type(err).__name__}: {first}); start one with 'ray start --head' and pass "
                "the address it prints as --address"
            ) from None

    def run(self, runs: Sequence[SweepRun], root: Path, total: int, progress: bool) -> None:
        """Submit every run, then report each as it finishes.

        Raises:
            SweepError: one line naming the runs that still failed after their retries.
        """
        from tqdm.auto import tqdm

        ray = self.ray
        self.connect()
        task = ray.remote(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=self.retries,
            retry_exceptions=True,
            max_calls=1,  # a fresh worker process per run
        )(_ray_task)
        pending = {
            task.options(name=f"espark-sweep:{r.name}").remote(
                r.name, str(r.path), r.config, str(root), self.gpus, r.pruning
            ): r
            for r in runs
        }
        failed: list[str] = []
        done = total - len(runs)
        with tqdm(total=total, initial=done, desc="sweep", unit="run", disable=not progress) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                r = pending.pop(ready[0])
                try:
                    info = ray.get(ready[0])
                except ray.exceptions.RayError as err:
                    info = {"error": (str(err).strip().splitlines() or [type(err).__name__])[0]}
                done += 1
                if "error" in info:
                    failed.append(f"{r.name} ({info['error'][:160]})")
                    tqdm.write(f"[{done}/{total}] {r.name} failed: {info['error'][:160]}")
                else:
                    how = f"attempt {info['attempt']}" + (", resumed" if info["resumed"] else "")
                    tqdm.write(
                        f"[{done}/{total}] {r.name} finished: test return "
                        f"{info['test_return']:,.1f} in {info['seconds']:.0f} s "
                        f"({how}; {info['host']})"
                    )
                bar.update(1)
        if failed:
            raise SweepError(
                f"{len(failed)} of {total} runs failed: {'; '.join(failed)}; see "
                f"{root / ATTEMPTS}/<run>.log, then run the same command again to resume them"
            )


def make_executor(
    name: str,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    retries: int | None = None,
) -> LocalExecutor | RayExecutor:
    """The executor ``name`` (``local`` or ``ray``); one-line ``SystemExit`` for bad options."""
    ray_only = {
        "--address": address,
        "--cpus-per-run": cpus_per_run,
        "--gpus-per-run": gpus_per_run,
        "--retries": retries,
    }
    if name == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise SystemExit(f"espark sweep: {', '.join(given)} need --executor ray")
        return LocalExecutor()
    if name != "ray":
        raise SystemExit(f"espark sweep: unknown executor {name!r}; use local or ray")
    for flag, value in (("--cpus-per-run", cpus_per_run), ("--gpus-per-run", gpus_per_run)):
        if value is not None and value < 0:
            raise SystemExit(f"espark sweep: {flag} must be >= 0, got {value}")
    if retries is not None and retries < 0:
        raise SystemExit(f"espark sweep: --retries must be >= 0, got {retries}")
    return RayExecutor(
        address,
        1.0 if cpus_per_run is None else cpus_per_run,
        0.0 if gpus_per_run is None else gpus_per_run,
        2 if retries is None else retries,
    )
