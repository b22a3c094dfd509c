"""The sandbox, parent side: check untrusted mask programs in child processes, read the results.

Process layout for one call of :func:`check_in_children`::

    parent (trainer) --JSON lines--> zygote: `python -I`, minimal env, JAX_PLATFORMS=cpu,
                                     imports JAX once (no backend, one thread), then per candidate:
                                       fork -> child: own session/process group, only its std
                                       streams and result pipe, network namespace, uid nobody
                                       (when root), empty temp cwd, RLIMIT_AS/CPU/FSIZE=0/NPROC/
                                       NOFILE, JAX warm-up, audit-hook tripwire (no file writes,
                                       processes, sockets, new packages),
                                       check_in_process(...) -> result + artefact on a pipe

The zygote and the children run :mod:`espark_jax.masks.zygote` (protections:
:mod:`espark_jax.masks.harden`); the zygote enforces each child's wall-clock timeout and runs at
most ``max_workers`` children at once, and forking a pre-imported process saves the JAX import
per candidate; a :class:`Zygote` can serve many calls (a run keeps one). This module starts the
zygote, feeds it requests (with the trainer's calling convention: x64 flag and platform) and
turns its replies (results with their exported artefact, timeouts, memory or CPU exhaustion,
crashes) into :class:`~espark_jax.masks.result.MaskCheckResult` records. It never executes
candidate code; loading the artefacts in the parent is :mod:`espark_jax.masks.compile`'s job.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from espark_jax.masks.export import Convention
from espark_jax.masks.result import CheckLimits, MaskCheckResult
from espark_jax.masks.static import extract_program
from espark_jax.masks.task import MaskTask, save_samples

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys\nsys.path.insert(0, sys.argv[1])\n"
    "from espark_jax.masks.zygote import zygote_main\nzygote_main()\n"
)
_OOM_MARKERS = (
    "MemoryError",
    "bad_alloc",
    "RESOURCE_EXHAUSTED",
    "Cannot allocate memory",
    "Out of memory",
)


def _zygote_env(home: str, workroot: str) -> dict[str, str]:
    return {
        "JAX_PLATFORMS": "cpu",
        "PATH": os.defpath,
        "HOME": home,
        "TMPDIR": workroot,  # the children's working directories (reachable once they are nobody)
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONHASHSEED": "0",
    }


def _result_from_reply(
    reply: Mapping[str, Any], text: str, task: MaskTask, timeout_s: float, memory_mb: int
) -> MaskCheckResult:
    """The result a zygote reply stands for: the child's own, or a timeout, memory or crash."""
    code = extract_program(text, task.function_name)
    if reply.get("timed_out"):
        return MaskCheckResult.rejected(
            "timeout",
            f"the check did not finish within {timeout_s:g} s",
            "the code is too slow to trace: avoid huge Python numbers (x = x * x), long loops "
            "and big literals",
            code=code,
        )
    if reply.get("result"):
        result = MaskCheckResult.from_dict(reply["result"])
        if result.ok:
            result.artefact = base64.b64decode(reply.get("artefact") or "")
        return result
    stderr = str(reply.get("stderr", ""))
    stats = {"exit_status": reply.get("status"), "stderr_tail": stderr[-2000:]}
    if reply.get("status") == -signal.SIGXCPU:
        return MaskCheckResult.rejected(
            "timeout",
            "the check used up its CPU time limit (RLIMIT_CPU)",
            "the code is too slow to trace: avoid huge Python numbers, long loops and big literals",
            code,
            stats,
        )
    if any(m in stderr for m in _OOM_MARKERS):
        return MaskCheckResult.rejected(
            "memory",
            f"the check exceeded the memory limit of {memory_mb} MB",
            "avoid huge Python lists, numbers or arrays",
            code,
            stats,
        )
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return MaskCheckResult.rejected(
        "crash",
        f"the checker process died (exit status {reply.get('status')}) {tail}".strip(),
        "simplify the code; avoid huge numbers, lists and arrays",
        code,
        stats,
    )


class Zygote:
    """One sandbox zygote process, started at construction and reused by every batch of checks
    until :meth:`close` (a run keeps one for all its iterations: the zygote's own start-up, the
    Python and JAX import, is paid once and overlaps whatever the caller does meanwhile).

    The zygote never executes candidate code (each candidate runs in a child forked from it), so
    reusing it across batches shares nothing between candidates. A zygote that dies or stops
    answering fails its open requests and is replaced by a fresh one at the next batch.
    """

    def __init__(self) -> None:
        self._home = tempfile.TemporaryDirectory(prefix="maskcheck-zygote-")
        self._work = tempfile.TemporaryDirectory(prefix="maskcheck-work-")
        os.chmod(self._work.name, 0o711)  # traversable, not listable: each child owns its folder
        self._err = open(os.path.join(self._home.name, "zygote.err"), "w+b")  # noqa: SIM115
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, _PACKAGE_ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            cwd=self._home.name,
            env=_zygote_env(self._home.name, self._work.name),
            start_new_session=True,
        )

    def run(
        self, requests: list[dict[str, Any]], max_workers: int, timeout_s: float
    ) -> list[dict[str, Any]]:
        """Send the requests, at most ``max_workers`` in flight; one reply per request, in
        request order."""
        if self._proc is None:
            raise RuntimeError("this sandbox zygote is closed; start a new Zygote()")
        if self._proc.poll() is not None:
            self._start()
        assert self._proc is not None
        # generous: a zygote that stops answering (crashed import, bug) must not hang
        replies, alive = _exchange(self._proc, self._err, requests, max_workers, timeout_s + 120.0)
        if not alive:
            self._kill()
        return [replies[r["id"]] for r in requests]

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def close(self) -> None:
        """Stop the zygote (its children with it) and remove its folders; idempotent."""
        if self._proc is None:
            return
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # end of requests: an idle zygote exits on its own
            self._proc.wait(timeout=5)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            pass
        self._kill()
        self._proc = None
        self._err.close()
        self._home.cleanup()
        self._work.cleanup()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exchange(
    proc: subprocess.Popen,
    err: Any,
    requests: list[dict[str, Any]],
    max_workers: int,
    patience: float,
) -> tuple[dict[int, dict[str, Any]], bool]:
    """Feed requests to the zygote and collect its replies by id, and whether the zygote is
    still usable; a zygote that goes silent for ``patience`` seconds (or dies) yields a failure
    reply for every request still open."""
    assert proc.stdin is not None and proc.stdout is not None
    replies: dict[int, dict[str, Any]] = {}
    out_fd, buf, sent, alive = proc.stdout.fileno(), b"", 0, True
    try:
        while len(replies) < len(requests):
            try:
                while sent < len(requests) and sent - len(replies) < max_workers:
                    proc.stdin.write((json.dumps(requests[sent]) + "\n").encode())
                    proc.stdin.flush()
                    sent += 1
                readable, _, _ = select.select([out_fd], [], [], patience)
                chunk = os.read(out_fd, 1 << 16) if readable else b""
            except BrokenPipeError:
                chunk = b""
            if not chunk:
                err.seek(0)
                msg = err.read().decode(errors="replace")[-2000:] or "no output"
                stopped = {
                    "status": proc.poll(),
                    "timed_out": False,
                    "result": None,
                    "stderr": f"the sandbox zygote stopped: {msg}",
                }
                for r in requests:
                    replies.setdefault(r["id"], dict(stopped))
                alive = False
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = json.loads(line)
                replies[int(reply["id"])] = reply
    except BrokenPipeError:
        pass  # every reply is in (or recorded as a zygote failure); the caller kills the zygote
    return replies, alive


def check_in_children(
    texts: list[str],
    task: MaskTask,
    samples: Mapping[str, Any] | None,
    limits: CheckLimits,
    max_workers: int,
    timeout_s: float,
    memory_mb: int,
    convention: Convention,
    zygote: Zygote | None = None,
) -> list[MaskCheckResult]:
    """The sandboxed children's verdicts on ``texts``, in order; nothing is loaded (``fn=None``;
    an accepted verdict carries its exported ``artefact`` bytes).

    At most ``max_workers`` children run at once, each under ``timeout_s`` and ``memory_mb``
    (0: no limit), exporting under ``convention``, forked from ``zygote`` (a fresh
    :class:`Zygote` for this call when None). A verdict's ``seconds`` is the child's own check
    time, ``timeout_s`` for a timeout, or the whole batch's time when the child sent nothing
    back.

    Raises:
        ValueError: a worker count, timeout or memory limit out of range, ``samples`` that do
            not match the task, or a task with 64-bit fields in a run without x64.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if memory_mb < 0:
        raise ValueError(f"memory_mb must be >= 0 (0 = no limit), got {memory_mb}")
    if task.uses_x64 and not convention.x64:
        raise ValueError(
            f"{task.env_name or 'the mask task'} has 64-bit context fields; enable 64-bit JAX "
            "(jax.config.update('jax_enable_x64', True)) before checking its masks"
        )
    if not texts:
        return []
    with tempfile.TemporaryDirectory(prefix="maskcheck-samples-") as tmp:
        samples_path = None
        if samples is not None:
            samples_path = os.path.join(tmp, "samples.npz")
            save_samples(samples_path, task, samples)
        requests = [
            {
                "id": i,
                "text": t,
                "task": task.to_dict(),
                "limits": limits.to_dict(),
                "samples_path": samples_path,
                "timeout_s": timeout_s,
                "memory_mb": memory_mb,
                "convention": convention.to_dict(),
            }
            for i, t in enumerate(texts)
        ]
        t0 = time.perf_counter()
        if zygote is not None:
            replies = zygote.run(requests, max_workers, timeout_s)
        else:
            with Zygote() as fresh:
                replies = fresh.run(requests, max_workers, timeout_s)
        elapsed = time.perf_counter() - t0
    results = []
    for text, reply in zip(texts, replies):
        result = _result_from_reply(reply, text, task, timeout_s, memory_mb)
        if reply.get("timed_out"):
            result.seconds = timeout_s
        elif not reply.get("result"):
            result.seconds = elapsed
        results.append(result)
    return results
