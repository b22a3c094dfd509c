"""Check untrusted mask programs in child processes; compile only accepted ones in the parent.

Process layout for one call of :func:`check_candidates`::

    parent (trainer) --JSON lines--> zygote: `python -I`, minimal env, JAX_PLATFORMS=cpu,
                                     imports JAX once (no backend, one thread), then per candidate:
                                       fork -> child: own session/process group, RLIMIT_AS,
                                       empty temp cwd, stdout/stdin closed, JAX warm-up, audit-hook
                                       tripwire (no file writes, processes, sockets, new packages),
                                       check_in_process(...) -> one JSON result on a pipe

The zygote enforces each child's wall-clock timeout (SIGKILL to the child's process group before
reaping it) and runs at most ``max_workers`` children at once; forking a pre-imported process
saves the ~1.5 s JAX import per candidate. The parent never executes text that failed: only when
a child accepted a candidate does the parent extract the code from the same text, re-run the
static validation and exec it in the restricted namespace (:func:`load_mask_fn`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from espark_jax.masks.compile import (
    CheckLimits,
    MaskCheckResult,
    SandboxViolation,
    check_in_process,
    load_mask_fn,
)
from espark_jax.masks.static import Rejected, extract_code
from espark_jax.masks.task import MaskTask, load_samples, save_samples

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = "import sys\nsys.path.insert(0, sys.argv[1])\nfrom espark_jax.masks.sandbox import zygote_main\nzygote_main()\n"
_BLOCKED_PREFIXES = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "subprocess.",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.putenv",
    "os.unsetenv",
    "os.chdir",
    "shutil.",
    "socket.",
    "ctypes.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "pty.",
    "sqlite3.",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_OOM_MARKERS = (
    "MemoryError",
    "bad_alloc",
    "RESOURCE_EXHAUSTED",
    "Cannot allocate memory",
    "Out of memory",
)


# ------------------------------------------------------------------------------ candidate child
def _warm_up() -> None:
    """Start the CPU backend and compile once, so the tripwire can forbid imports of new packages."""
    import jax
    import jax.numpy as jnp

    def f(x: Any) -> Any:
        y = jnp.where(x > 0, jnp.floor(x), jnp.minimum(x, 1.0)).astype(bool)
        return jnp.logical_and(y, jnp.any(y, axis=-1, keepdims=True)).astype(jnp.float32)

    jax.block_until_ready(jax.jit(jax.vmap(f))(jnp.ones((4, 2, 3))))


def _install_tripwire() -> None:
    """An audit hook that raises on file writes, processes, sockets and imports of new packages."""
    known = {name.split(".")[0] for name in sys.modules}

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            mode = args[1] if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else 0
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            ):
                raise SandboxViolation(f"sandbox blocked writing {args[0]!r}")
        elif event == "import":
            if str(args[0]).split(".")[0] not in known:
                raise SandboxViolation(f"sandbox blocked importing {args[0]!r}")
        elif event.startswith(_BLOCKED_PREFIXES):
            raise SandboxViolation(f"sandbox blocked {event}")

    sys.addaudithook(hook)


def _candidate_child(request: Mapping[str, Any], workdir: str, result_fd: int) -> None:
    """Body of a forked candidate process: limits, isolation, warm-up, tripwire, check, report."""
    import resource

    os.setsid()
    mem = int(request["memory_mb"]) * 2**20
    if mem > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir(workdir)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    err = os.open(os.path.join(workdir, "stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(err, 2)
    t0 = time.perf_counter()
    try:
        import jax

        task = MaskTask.from_dict(request["task"])
        if task.uses_x64:
            jax.config.update("jax_enable_x64", True)
        samples = (
            load_samples(request["samples_path"], task) if request.get("samples_path") else None
        )
        _warm_up()
        _install_tripwire()
        startup = time.perf_counter() - t0
        result = check_in_process(
            request["text"],
            task,
            samples=samples,
            limits=CheckLimits.from_dict(request.get("limits")),
        )
        result.stats["child_startup_s"] = round(startup, 4)
        result.seconds = time.perf_counter() - t0
    except MemoryError:
        result = MaskCheckResult.rejected(
            "memory", "the check ran out of memory", "avoid huge Python lists, numbers or arrays"
        )
    except BaseException as exc:  # report, never hang: the zygote waits for one JSON document
        result = MaskCheckResult.rejected(
            "sandbox",
            f"the checker failed: {type(exc).__name__}: {exc}".splitlines()[0],
            "this is a checker error, not necessarily the candidate's",
        )
    data = json.dumps(result.to_dict()).encode()
    while data:
        data = data[os.write(result_fd, data) :]


# ------------------------------------------------------------------------------ zygote
@dataclasses.dataclass
class _Child:
    rid: int
    pid: int
    deadline: float
    workdir: str
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    timed_out: bool = False


def _send(msg: Mapping[str, Any]) -> None:
    data = (json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _thread_count() -> int:
    tasks = "/proc/self/task"
    return len(os.listdir(tasks)) if os.path.isdir(tasks) else 1


def _fork_candidate(request: Mapping[str, Any]) -> tuple[_Child, int]:
    """Fork one candidate process; returns its record and the read end of its result pipe."""
    if _thread_count() > 1:
        raise RuntimeError("the zygote has started threads; forking it would be unsafe")
    workdir = tempfile.mkdtemp(prefix="maskcheck-")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the candidate's process
        code = 0
        try:
            os.close(rfd)
            _candidate_child(request, workdir, wfd)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(wfd)
    child = _Child(int(request["id"]), pid, time.monotonic() + float(request["timeout_s"]), workdir)
    return child, rfd


def _finish_child(child: _Child) -> None:
    _, status = os.waitpid(child.pid, 0)
    stderr = ""
    try:
        with open(os.path.join(child.workdir, "stderr.txt"), errors="replace") as fh:
            stderr = fh.read()[-4000:]
    except OSError:
        pass
    shutil.rmtree(child.workdir, ignore_errors=True)
    try:
        result = json.loads(child.buf.decode()) if child.buf else None
    except ValueError:
        result = None
    _send(
        {
            "id": child.rid,
            "status": os.waitstatus_to_exitcode(status),
            "timed_out": child.timed_out,
            "result": result,
            "stderr": stderr,
        }
    )


def zygote_main() -> None:
    """Entry point of the zygote: JSON requests on stdin, one JSON line per finished candidate on stdout."""
    children: dict[int, _Child] = {}
    inbuf = b""
    stdin_open = True
    while stdin_open or children:
        now = time.monotonic()
        for child in children.values():
            if not child.timed_out and now >= child.deadline:
                child.timed_out = True
                for kill in (
                    os.killpg,
                    os.kill,
                ):  # not reaped yet, so the pid cannot have been reused
                    try:
                        kill(child.pid, signal.SIGKILL)
                        break
                    except ProcessLookupError:
                        continue
        waits = [c.deadline - now for c in children.values() if not c.timed_out]
        fds = ([0] if stdin_open else []) + list(children)
        readable, _, _ = select.select(fds, [], [], max(0.0, min(waits)) if waits else None)
        for fd in readable:
            if fd == 0:
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    stdin_open = False
                    continue
                inbuf += chunk
                while b"\n" in inbuf:
                    line, inbuf = inbuf.split(b"\n", 1)
                    request = json.loads(line)
                    try:
                        child, rfd = _fork_candidate(request)
                        children[rfd] = child
                    except Exception as exc:
                        _send(
                            {
                                "id": request["id"],
                                "status": -1,
                                "timed_out": False,
                                "result": None,
                                "stderr": f"{type(exc).__name__}: {exc}",
                            }
                        )
            else:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    children[fd].buf.extend(chunk)
                else:
                    os.close(fd)
                    _finish_child(children.pop(fd))


# ------------------------------------------------------------------------------ parent side
def _zygote_env(workdir: str) -> dict[str, str]:
    return {
        "JAX_PLATFORMS": "cpu",
        "PATH": os.defpath,
        "HOME": workdir,
        "TMPDIR": workdir,
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
    code = extract_code(text, task.function_name)
    if reply.get("timed_out"):
        return MaskCheckResult.rejected(
            "timeout",
            f"the check did not finish within {timeout_s:g} s",
            "the code is too slow to trace: avoid huge Python numbers (x = x * x), long loops and big literals",
            code=code,
        )
    if reply.get("result"):
        return MaskCheckResult.from_dict(reply["result"])
    stderr = str(reply.get("stderr", ""))
    stats = {"exit_status": reply.get("status"), "stderr_tail": stderr[-2000:]}
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


def _run_zygote(
    requests: list[dict[str, Any]], max_workers: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Send the requests to a fresh zygote, at most ``max_workers`` in flight; replies in request order."""
    replies: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="maskcheck-zygote-") as home:
        with open(os.path.join(home, "zygote.err"), "w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, _PACKAGE_ROOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=home,
                env=_zygote_env(home),
                start_new_session=True,
            )
            assert proc.stdin is not None and proc.stdout is not None
            out_fd, buf, sent = proc.stdout.fileno(), b"", 0
            # generous: a zygote that stops answering (crashed import, bug) must not hang the trainer
            patience = timeout_s + 120.0
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
                        for r in requests:
                            replies.setdefault(
                                r["id"],
                                {
                                    "status": proc.poll(),
                                    "timed_out": False,
                                    "result": None,
                                    "stderr": f"the sandbox zygote stopped: {msg}",
                                },
                            )
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        reply = json.loads(line)
                        replies[int(reply["id"])] = reply
                proc.stdin.close()
                proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass  # every reply is in (or recorded as a zygote failure); the zygote is killed below
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return [replies[r["id"]] for r in requests]


def _finish_in_parent(text: str, task: MaskTask, result: MaskCheckResult) -> MaskCheckResult:
    """Compile an accepted candidate in this process: same text, static validation again, then exec."""
    if not result.ok:
        return result
    code = extract_code(text, task.function_name)
    try:
        result.fn = load_mask_fn(code, task)
    except Rejected as rej:  # cannot normally happen: the child ran the same validation
        return MaskCheckResult.rejected(
            rej.stage,
            f"parent re-validation failed: {rej.message}",
            rej.hint,
            code,
            result.stats,
            result.seconds,
        )
    result.code = code
    return result


def check_candidates(
    texts: Sequence[str],
    task: MaskTask,
    *,
    max_workers: int = 2,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
) -> list[MaskCheckResult]:
    """Check K candidates concurrently in sandboxed children (at most ``max_workers`` at once).

    ``samples`` are recorded contexts (field -> ``[batch..., *shape]``) added to the value checks;
    ``timeout_s`` and ``memory_mb`` apply to each candidate. Results come in input order: accepted
    ones with ``fn`` compiled in this process, the others with ``fn=None`` and a one-line
    ``reason`` for the LLM. ``seconds`` is the candidate's own check time (its ``stats`` hold
    ``timings`` per stage and ``child_startup_s``).

    Raises:
        ValueError: bad arguments (worker count, timeout, memory, samples that do not match the task).
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if memory_mb < 0:
        raise ValueError(f"memory_mb must be >= 0 (0 = no limit), got {memory_mb}")
    texts = list(texts)
    if not texts:
        return []
    limits = limits or CheckLimits()
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
            }
            for i, t in enumerate(texts)
        ]
        t0 = time.perf_counter()
        replies = _run_zygote(requests, max_workers, timeout_s)
        elapsed = time.perf_counter() - t0
    results = []
    for text, reply in zip(texts, replies):
        result = _result_from_reply(reply, text, task, timeout_s, memory_mb)
        if reply.get("timed_out"):
            result.seconds = timeout_s
        elif not reply.get("result"):
            result.seconds = elapsed
        results.append(_finish_in_parent(text, task, result))
    return results


def compile_mask(
    text: str,
    task: MaskTask,
    *,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
) -> MaskCheckResult:
    """Check one LLM response in a sandboxed child and, when it passes, compile it here.

    Returns a :class:`MaskCheckResult`; ``result.fn`` is the ``safe_mask``-wrapped function
    ``fn(ctx, action_space) -> bool[*agent_shape, n_actions]`` for one environment, or None.
    """
    return check_candidates(
        [text],
        task,
        max_workers=1,
        samples=samples,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        limits=limits,
    )[0]
