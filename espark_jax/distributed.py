"""Multi-process runs: join a ``jax.distributed`` job; process 0 leads, the others follow.

``espark run`` and ``espark train`` join a job when coordinator settings are given, in this order:
the flags ``--coordinator-address HOST:PORT``, ``--num-processes N``, ``--process-id I``; the
environment variables ``JAX_COORDINATOR_ADDRESS`` (which JAX reads itself), ``JAX_NUM_PROCESSES``
and ``JAX_PROCESS_ID``; JAX's own cluster detection (SLURM: ``srun`` with more than one task;
Open MPI: ``mpirun``), which fills in whatever is left unset. ``--num-processes 1`` stays alone.

Every process then runs the same program (SPMD): the K axis of the learner state (and the
environment axis when K is smaller than the device count) is sharded over the devices of all
processes (:mod:`espark_jax.ippo.sharding`). Process 0, the *leader*, alone calls the LLM, runs
the mask checks and writes the run directory and checkpoints (orbax, from that process only); the
*followers* receive the checked candidates (:meth:`Job.share_candidates`: the exported
artefacts, loaded in each process; no process executes candidate source), the finished
iterations and the learners to start from, and train in lockstep. A single process is a job of
one, for which every step here is the identity.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from espark_jax.candidates import Candidate
from espark_jax.masks.export import load_exported
from espark_jax.masks.task import MaskTask
from espark_jax.runs import BEST, RunDir

FLAGS_HINT = (
    "start every process with the same --coordinator-address HOST:PORT (process 0's host, "
    "reachable from every process) and --num-processes, and its own --process-id 0..N-1"
)


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Where to find the job: what was given, and the cluster JAX detects the rest from."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    cluster: str | None = None
    timeout_s: int = 300

    def describe(self) -> str:
        """One line: coordinator, process and the cluster the rest comes from."""
        where = self.coordinator_address or f"the {self.cluster} coordinator"
        who = f"process {self.process_id if self.process_id is not None else '?'}"
        return f"{where} as {who} of {self.num_processes or '?'}"


def detect_cluster(environ: Mapping[str, str]) -> str | None:
    """``"slurm"`` inside an ``srun`` step of several tasks, ``"openmpi"`` under ``mpirun``."""
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if all(v in environ for v in slurm) and environ["SLURM_NTASKS"].isdigit():
        return "slurm" if int(environ["SLURM_NTASKS"]) > 1 else None
    size = environ.get("OMPI_COMM_WORLD_SIZE", "")
    if "OMPI_MCA_orte_hnp_uri" in environ and size.isdigit() and int(size) > 1:
        return "openmpi"
    return None


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def job_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 300,
    environ: Mapping[str, str] | None = None,
) -> JobSettings | None:
    """The job to join, or None for a run in this process alone (see the module doc).

    Raises:
        ValueError: one line naming the missing or bad setting.
    """
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    num = num_processes if num_processes is not None else _int_env(env, "JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _int_env(env, "JAX_PROCESS_ID")
    cluster = detect_cluster(env)
    if num == 1 or (address is None and num is None and pid is None and cluster is None):
        return None
    if cluster is None:
        missing = [
            flag
            for flag, value in (
                ("--coordinator-address", address),
                ("--num-processes", num),
                ("--process-id", pid),
            )
            if value is None
        ]
        if missing:
            raise ValueError(
                f"a jax.distributed job needs {', '.join(missing)} (or the JAX_COORDINATOR_ADDRESS,"
                " JAX_NUM_PROCESSES, JAX_PROCESS_ID variables, or srun under SLURM)"
            )
    if num is not None and num < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num}")
    if pid is not None and num is not None and not 0 <= pid < num:
        raise ValueError(f"--process-id must be in 0..{num - 1}, got {pid}")
    if address is not None and ":" not in address:
        raise ValueError(f"--coordinator-address must be HOST:PORT, got {address!r}")
    if timeout_s < 1:
        raise ValueError(f"--coordinator-timeout must be >= 1 s, got {timeout_s}")
    return JobSettings(address, num, pid, cluster, int(timeout_s))


def join(settings: JobSettings | None) -> None:
    """Join the job (before any JAX computation); nothing for None or when already joined.

    Raises:
        RuntimeError: one line naming the coordinator and the fix when joining fails.
    """
    if settings is None or jax.distributed.is_initialized():
        return
    _check_coordinator(settings)  # JAX aborts the process when it cannot connect: check first
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes
    try:
        jax.distributed.initialize(
            settings.coordinator_address,
            settings.num_processes,
            settings.process_id,
            initialization_timeout=settings.timeout_s,
        )
    except Exception as err:  # JAX raises several types (timeouts, bad values, late calls)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise RuntimeError(
            f"cannot join the jax.distributed job at {settings.describe()} "
            f"({type(err).__name__}: {first}); {FLAGS_HINT}"
        ) from None


def joined() -> bool:
    """Whether this process belongs to a ``jax.distributed`` job."""
    return jax.distributed.is_initialized()


def _check_coordinator(settings: JobSettings) -> None:
    """Process 0: the coordinator's port is free; the others: it accepts connections within the
    timeout. One-line ``RuntimeError`` otherwise (JAX itself would abort the process)."""
    import socket
    import time

    if settings.coordinator_address is None or settings.process_id is None:
        return  # the cluster's launcher knows
    host, _, port = settings.coordinator_address.rpartition(":")
    host = host.strip("[]")
    if settings.process_id == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind(("", int(port)))
            except OSError as err:
                raise RuntimeError(
                    f"process 0 cannot serve the coordinator on port {port} ({err.strerror}); "
                    "choose a free port in --coordinator-address"
                ) from None
        return
    deadline = time.monotonic() + settings.timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"cannot reach the coordinator at {settings.coordinator_address} within "
                    f"{settings.timeout_s} s ({err.strerror or err}); start process 0 with the "
                    f"same settings; {FLAGS_HINT}"
                ) from None
            time.sleep(0.5)


# ---------------------------------------------------------------- process 0 -> all
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def broadcast_json(obj: Any) -> Any:
    """Process 0's JSON-ready ``obj`` in every process (the others pass anything)."""
    from jax.experimental import multihost_utils as mh

    data = json.dumps(_jsonable(obj)).encode() if jax.process_index() == 0 else b""
    size = int(mh.broadcast_one_to_all(np.asarray([len(data)], np.int32))[0])
    buf = np.zeros(size, np.uint8)
    buf[: len(data)] = np.frombuffer(data, np.uint8)
    return json.loads(bytes(np.asarray(mh.broadcast_one_to_all(buf))).decode())


def broadcast_tree(tree: Any, like: Any) -> Any:
    """Process 0's pytree of arrays (structure, shapes and dtypes of ``like``) in every process,
    bit for bit (sent as bytes); the others pass None."""
    from jax.experimental import multihost_utils as mh

    shapes, treedef = jax.tree_util.tree_flatten(like)
    if jax.process_index() == 0:
        leaves = [np.ascontiguousarray(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)]
    else:
        leaves = [np.zeros(s.shape, s.dtype) for s in shapes]
    raw = mh.broadcast_one_to_all([x.reshape(-1).view(np.uint8) for x in leaves])
    out = [np.asarray(r).view(s.dtype).reshape(s.shape) for r, s in zip(raw, shapes)]
    return treedef.unflatten(out)


class LeaderError(RuntimeError):
    """Process 0 failed at a step the followers wait for."""


class Job:
    """This process's place in the job: ``index`` of ``count`` processes (one when alone)."""

    def __init__(self) -> None:
        self.index, self.count = jax.process_index(), jax.process_count()

    @classmethod
    def current(cls) -> "Job":
        """The job this process belongs to."""
        return cls()

    @property
    def primary(self) -> bool:
        """Process 0 (or a process alone): calls the LLM, writes files, prints."""
        return self.index == 0

    @property
    def multi(self) -> bool:
        """More than one process."""
        return self.count > 1

    def lead(self, fn: Callable[[], Any] | None, encode: Callable[[Any], Any] = _jsonable) -> Any:
        """``fn()`` on process 0; the others get ``encode(fn())`` through JSON, or a
        :class:`LeaderError` when it raised (which process 0 raises itself)."""
        if not self.multi:
            return fn() if fn is not None else None
        if self.primary:
            try:
                value = fn() if fn is not None else None
            except BaseException as err:
                first = (str(err).strip().splitlines() or [""])[0][:200]
                broadcast_json({"error": f"{type(err).__name__}: {first}"})
                raise
            broadcast_json({"ok": encode(value)})
            return value
        out = broadcast_json(None)
        if "error" in out:
            raise LeaderError(f"process 0 failed: {out['error']}")
        return out["ok"]

    def share_run(self, run: RunDir | None) -> Any:
        """The run directory as this process sees it: process 0's own (reads shared with the
        others), a :class:`FollowerRun` elsewhere."""
        if not self.multi:
            return run
        path = self.lead(lambda: str(run.path))
        return LeaderRun(self, run.path) if self.primary else FollowerRun(self, path)

    def share_candidates(
        self, make: Callable[[], Sequence[Candidate]], task: MaskTask
    ) -> list[Candidate]:
        """Process 0's checked candidates (``make()``) in every process: the others load the
        exported artefacts process 0 holds (:func:`~espark_jax.masks.load_exported`, hash
        checked), so every process runs the same checked mask functions."""
        if not self.multi:
            return list(make())
        records = self.lead(make, encode=lambda cands: [_record(c) for c in cands])
        if not self.primary:
            return [_candidate(r, task) for r in records]
        return list(records)


_FIELDS = ("slot", "code", "check", "stats", "verdict", "repairs", "state", "reason")


def _record(c: Candidate) -> dict[str, Any]:
    artefact = base64.b64encode(c.fn.data).decode() if c.ok else None
    sha = c.fn.sha256 if c.ok else None
    return {**{f: getattr(c, f) for f in _FIELDS}, "ok": c.ok, "artefact": artefact, "sha": sha}


def _candidate(record: dict[str, Any], task: MaskTask) -> Candidate:
    c = Candidate(record["slot"], prompt=None, **{f: record[f] for f in _FIELDS[1:]})
    if record["ok"]:
        data = base64.b64decode(record["artefact"])
        c.fn = load_exported(data, task, digest=record["sha"])
    return c


class LeaderRun(RunDir):
    """Process 0's run directory; what the followers need from it is sent to them."""

    def __init__(self, job: Job, path: str | os.PathLike) -> None:
        super().__init__(path)
        self.job = job

    def iteration_summary(self, iteration: int) -> dict[str, Any] | None:
        """The summary of a finished iteration (None if unfinished), sent to every process."""
        return self.job.lead(lambda: RunDir.iteration_summary(self, iteration))

    def load_learner(self, iteration: int, like: Any, name: str = BEST) -> Any:
        """A learner saved for ``iteration``, sent to every process bit for bit."""

        def load() -> Any:
            return RunDir.load_learner(self, iteration, like, name)

        learner = self.job.lead(load, lambda _: 0)
        return broadcast_tree(learner, like)


class FollowerRun:
    """A follower's view of process 0's run directory: reads come from process 0 (the same calls
    in the same order as :class:`LeaderRun`), writes are process 0's business."""

    def __init__(self, job: Job, path: str | os.PathLike) -> None:
        self.job, self.path = job, Path(path)

    def iter_dir(self, iteration: int) -> Path:
        """Where process 0 keeps the iteration (never written from here)."""
        return self.path / f"iter_{iteration:02d}"

    def iteration_summary(self, iteration: int) -> dict[str, Any] | None:
        """Process 0's answer."""
        return self.job.lead(None)

    def load_learner(self, iteration: int, like: Any, name: str = BEST) -> Any:
        """Process 0's learner, bit for bit."""
        self.job.lead(None)
        return broadcast_tree(None, like)

    def read_code(self, iteration: int, slot: int) -> None:
        """Followers never talk to the provider: no code needed."""
        return None

    def train_returns(self, iteration: int, k: int) -> list[list[float | None]]:
        """Empty curves: the feedback built from them goes to the provider of process 0 only."""
        return [[] for _ in range(k)]

    def _process_0_writes(self, *args: Any, **kwargs: Any) -> None:
        """Process 0 writes the run's files; nothing is written here."""

    log = discard_unfinished = write_check = write_candidate_metrics = _process_0_writes
    write_summary = save_learner = _process_0_writes


class FollowerProvider:
    """The provider of a follower: process 0 asks the LLM; here it is never asked."""

    name = "follower"

    def __init__(self, index: int) -> None:
        self.label = f"follower process {index} (process 0 holds the provider)"

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        """Never called: followers receive the candidates."""
        raise RuntimeError("a follower process never calls the provider")

    def tell(self, iteration: int, results: Sequence[Any]) -> None:
        """Scores go to process 0's provider."""


def check_env(spec: Any) -> None:
    """Raise a one-line ``ValueError`` when a multi-process job gets a host environment."""
    if jax.process_count() > 1 and not spec.is_jax:
        raise ValueError(
            f"{spec.name} runs its simulations in one process's workers, not over a "
            "jax.distributed job; run it in one process (without --num-processes)"
        )
