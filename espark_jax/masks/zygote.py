"""What runs inside the sandbox: the zygote process and the candidate children it forks.

The zygote (started by :mod:`espark_jax.masks.sandbox` as ``python -I`` with a minimal
environment) imports JAX once, then reads JSON requests on stdin and forks one child per
candidate. A child starts its own session, keeps only its standard streams and result pipe,
reads its inputs, takes the OS protections of :mod:`espark_jax.masks.harden` (network namespace,
unprivileged uid, empty working directory, resource limits), warms JAX up, installs an
audit-hook tripwire (no file writes, processes, sockets or imports of new packages) and runs
:func:`~espark_jax.masks.checks.check_in_process` under the trainer's calling convention. It
writes one JSON document to its result pipe: the result (with the protections that were active
in ``stats["sandbox"]``) and the exported artefact (base64). The zygote kills a child's process
group at its deadline and answers one JSON line per finished child, with its stderr tail.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Mapping

from espark_jax.masks.checks import check_in_process
from espark_jax.masks.export import Convention
from espark_jax.masks.harden import RESULT_FD, drop_privileges, harden, isolate_fds
from espark_jax.masks.result import CheckLimits, MaskCheckResult, SandboxViolation
from espark_jax.masks.task import MaskTask, load_samples

_STDERR_TAIL = 4000

#: Audit events the tripwire refuses (prefixes): processes, file-system changes, network.
_BLOCKED_PREFIXES = tuple(
    """os.system os.exec os.posix_spawn os.spawn os.fork os.forkpty os.kill os.killpg subprocess.
    os.remove os.rename os.rmdir os.mkdir os.symlink os.link os.truncate os.chmod os.chown os.putenv
    os.unsetenv os.chdir shutil. socket. ctypes. urllib. http. ftplib. smtplib. webbrowser. pty.
    sqlite3.""".split()
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _warm_up() -> None:
    """Start the CPU backend, export a function and compile a call of the artefact once (on
    abstract shapes: nothing runs), so that everything a check imports lazily is imported
    before the tripwire forbids new imports."""
    import jax
    import jax.numpy as jnp

    def f(x: Any) -> Any:
        y = jnp.where(x > 0, jnp.floor(x), jnp.minimum(x, 1.0)).astype(bool)
        return jnp.logical_and(y, jnp.any(y, axis=-1, keepdims=True)).astype(jnp.float32)

    (b,) = jax.export.symbolic_shape("b")
    arg = jax.ShapeDtypeStruct((b, 2, 3), jnp.float32)
    exported = jax.export.export(jax.jit(jax.vmap(f)), platforms=("cpu",))(arg)
    exported = jax.export.deserialize(exported.serialize())
    jax.jit(exported.call).lower(jax.ShapeDtypeStruct((4, 2, 3), jnp.float32)).compile()


def _preload() -> None:
    """Import in the zygote, once, what the checks import lazily: the parser's ``unicodedata``
    (it normalises non-ASCII identifiers such as ``μ``), the ``flatbuffers`` of jax.export's
    serialiser and ``scipy.linalg``, which calling an exported function loads for its LAPACK
    kernels (importing it in every forked child would double the child's start-up). Pure
    imports: the zygote stays single-threaded."""
    import unicodedata  # noqa: F401

    import flatbuffers  # noqa: F401
    import scipy.linalg  # noqa: F401


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


def _candidate_child(request: Mapping[str, Any], workdir: str, result_fd: int, err_fd: int) -> None:
    """Body of a forked candidate process: isolation, inputs, protections, warm-up, tripwire,
    check, report."""
    os.setsid()
    sandbox = isolate_fds(result_fd, err_fd)
    t0 = time.perf_counter()
    try:
        import jax

        task = MaskTask.from_dict(request["task"])
        convention = Convention.from_dict(request["convention"])
        jax.config.update("jax_enable_x64", convention.x64)
        samples = (
            load_samples(request["samples_path"], task) if request.get("samples_path") else None
        )
        sandbox.update(harden(workdir, int(request["memory_mb"])))
        _warm_up()
        drop_privileges(workdir, float(request["timeout_s"]), sandbox)
        _install_tripwire()
        sandbox["audit_hook"] = True
        startup = time.perf_counter() - t0
        result = check_in_process(
            request["text"],
            task,
            samples=samples,
            limits=CheckLimits.from_dict(request.get("limits")),
            convention=convention,
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
    result.stats["sandbox"] = sandbox
    artefact = base64.b64encode(result.artefact).decode() if result.artefact else None
    data = json.dumps({"result": result.to_dict(), "artefact": artefact}).encode()
    while data:
        data = data[os.write(RESULT_FD, data) :]


@dataclasses.dataclass(eq=False)  # hashed by identity: several pipes map to one child
class _Child:
    rid: int
    pid: int
    deadline: float
    workdir: str
    result_fd: int
    fds: set[int]
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    err: bytearray = dataclasses.field(default_factory=bytearray)
    timed_out: bool = False

    def take(self, fd: int, chunk: bytes) -> None:
        """Data from one of its pipes (the stderr tail is bounded)."""
        if fd == self.result_fd:
            self.buf.extend(chunk)
        else:
            self.err.extend(chunk)
            del self.err[:-_STDERR_TAIL]


def _send(msg: Mapping[str, Any]) -> None:
    data = (json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _thread_count() -> int:
    tasks = "/proc/self/task"
    return len(os.listdir(tasks)) if os.path.isdir(tasks) else 1


def _fork_candidate(request: Mapping[str, Any]) -> _Child:
    """Fork one candidate process; its record holds the read ends of its result and stderr
    pipes."""
    if _thread_count() > 1:
        raise RuntimeError("the zygote has started threads; forking it would be unsafe")
    workdir = tempfile.mkdtemp(prefix="maskcheck-")
    rfd, wfd = os.pipe()
    efd, ewfd = os.pipe()
    # the zygote's objects (JAX, SciPy) to the permanent generation: the child's collector
    # then never walks them, which would copy every page of the inherited heap
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the candidate's process
        code = 0
        try:
            os.close(rfd)
            os.close(efd)
            _candidate_child(request, workdir, wfd, ewfd)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(wfd)
    os.close(ewfd)
    deadline = time.monotonic() + float(request["timeout_s"])
    return _Child(int(request["id"]), pid, deadline, workdir, rfd, {rfd, efd})


def _finish_child(child: _Child) -> None:
    _, status = os.waitpid(child.pid, 0)
    shutil.rmtree(child.workdir, ignore_errors=True)
    try:
        doc = json.loads(child.buf.decode()) if child.buf else {}
    except ValueError:
        doc = {}
    _send(
        {
            "id": child.rid,
            "status": os.waitstatus_to_exitcode(status),
            "timed_out": child.timed_out,
            "result": doc.get("result"),
            "artefact": doc.get("artefact"),
            "stderr": child.err.decode(errors="replace"),
        }
    )


def _kill_overdue(children: Mapping[int, _Child], now: float) -> None:
    """SIGKILL the process group of every child past its deadline (once)."""
    for child in set(children.values()):
        if child.timed_out or now < child.deadline:
            continue
        child.timed_out = True
        for kill in (os.killpg, os.kill):  # not reaped yet, so the pid cannot have been reused
            try:
                kill(child.pid, signal.SIGKILL)
                break
            except ProcessLookupError:
                continue


def _start(line: bytes, children: dict[int, _Child]) -> None:
    """Fork the candidate of one request line, or answer at once when forking fails."""
    request = json.loads(line)
    try:
        child = _fork_candidate(request)
        children.update({fd: child for fd in child.fds})
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


def zygote_main() -> None:
    """The zygote: JSON requests on stdin, one JSON line per finished candidate on stdout."""
    _preload()
    children: dict[int, _Child] = {}
    inbuf = b""
    stdin_open = True
    while stdin_open or children:
        now = time.monotonic()
        _kill_overdue(children, now)
        waits = [c.deadline - now for c in set(children.values()) if not c.timed_out]
        fds = ([0] if stdin_open else []) + list(children)
        readable, _, _ = select.select(fds, [], [], max(0.0, min(waits)) if waits else None)
        for fd in readable:
            chunk = os.read(fd, 1 << 16)
            if fd == 0:
                stdin_open = bool(chunk)
                inbuf += chunk
                while b"\n" in inbuf:
                    line, inbuf = inbuf.split(b"\n", 1)
                    _start(line, children)
            elif chunk:
                children[fd].take(fd, chunk)
            else:
                os.close(fd)
                child = children.pop(fd)
                child.fds.discard(fd)
                if not child.fds:
                    _finish_child(child)
