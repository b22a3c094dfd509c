"""OS-level protections of a sandbox child, beside the audit-hook tripwire (defence in depth).

:func:`isolate_fds` runs first in a freshly forked candidate process: stdin/stdout on
``/dev/null``, stderr on the child's own pipe, its result pipe on fd 3, and every other
inherited descriptor (the zygote's request and reply pipes, sibling children's result pipes)
closed. :func:`harden` then applies, while the process is still single-threaded: a fresh
network namespace (as root, or in a new user namespace where the kernel allows that), an empty
working directory and resource limits (address space, core dumps, file size 0, open files).
:func:`drop_privileges` follows once JAX is warm (the interpreter's own files may be readable
by root only, so everything is imported by then): an unprivileged uid/gid when started as root
(``nobody``), RLIMIT_NPROC and RLIMIT_CPU. Each returns what it achieved; the child records it
as ``stats["sandbox"]`` in its result, and a protection the kernel refuses is recorded as
unavailable instead of failing the check.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import resource
from typing import Any

RESULT_FD = 3
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
#: Open files a child may hold (JAX's own pipes and eventfds included).
MAX_OPEN_FILES = 512
#: Tasks (processes and threads) the unprivileged uid may hold beside those it already has.
SPARE_TASKS = 256


def _open_fds() -> list[int]:
    """The descriptors open now (the listing's own descriptor, closed again, left out)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
            fds.append(int(name))
        except OSError:
            continue
    return sorted(fds)


def isolate_fds(result_fd: int, stderr_fd: int) -> dict[str, Any]:
    """Standard streams and the result pipe only; every other inherited descriptor closed.

    Returns ``{"closed_fds": n, "open_fds": [0, 1, 2, 3]}`` (measured after closing).
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(stderr_fd, 2)
    if result_fd != RESULT_FD:
        os.dup2(result_fd, RESULT_FD)
    closed = 0
    for fd in _open_fds():
        if fd > RESULT_FD:
            os.close(fd)
            closed += fd not in (devnull, stderr_fd, result_fd)
    return {"closed_fds": closed, "open_fds": _open_fds()}


def _unshare(flags: int) -> int:
    """``unshare(2)``; 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if libc.unshare(flags) == 0 else ctypes.get_errno()


def _network_namespace() -> str:
    """A fresh, empty network namespace (loopback only, down): "new", "new (user namespace)" or
    why not."""
    err = _unshare(CLONE_NEWNET) if os.geteuid() == 0 else errno.EPERM
    if err == 0:
        return "new"
    if _unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "new (user namespace)"
    return f"unavailable ({errno.errorcode.get(err, err)})"


def _tasks_of(uid: int) -> int:
    """Processes and threads of ``uid`` now (what RLIMIT_NPROC counts)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status", "rb") as fh:
                status = dict(line.split(b":", 1) for line in fh if b":" in line)
        except OSError:
            continue
        if int(status.get(b"Uid", b"-1").split()[0]) == uid:
            n += int(status.get(b"Threads", b"1"))
    return n


def _limit(name: str, value: int, limits: dict[str, int]) -> None:
    which = getattr(resource, f"RLIMIT_{name}")
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
    limits[name] = value


def harden(workdir: str, memory_mb: int) -> dict[str, Any]:
    """Network namespace, empty cwd and resource limits (see the module doc).

    Call single-threaded, after :func:`isolate_fds`.
    """
    record: dict[str, Any] = {"network_namespace": _network_namespace()}
    os.chdir(workdir)
    record["cwd_empty"] = not os.listdir(".")
    limits: dict[str, int] = {}
    if memory_mb > 0:
        _limit("AS", memory_mb * 2**20, limits)
    _limit("CORE", 0, limits)
    _limit("FSIZE", 0, limits)
    _limit("NOFILE", MAX_OPEN_FILES, limits)
    record["rlimits"] = limits
    return record


def drop_privileges(workdir: str, timeout_s: float, record: dict[str, Any]) -> None:
    """Become ``nobody`` when root (owner of ``workdir``, no groups), then RLIMIT_NPROC (the
    uid's tasks now plus :data:`SPARE_TASKS`; root ignores it) and RLIMIT_CPU a little above the
    wall-clock timeout (a backstop: the zygote kills at the timeout; beyond it, SIGXCPU)."""
    dropped = os.geteuid() == 0
    if dropped:
        try:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:
            uid = gid = 65534
        os.chown(workdir, uid, gid)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    record.update(uid=os.getuid(), gid=os.getgid(), privileges_dropped=dropped)
    limits = record["rlimits"]
    if os.geteuid() != 0:
        _limit("NPROC", _tasks_of(os.getuid()) + SPARE_TASKS, limits)
    soft = int(2 * timeout_s) + 10
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    limits["CPU"] = soft
