"""The parent's side of the SUMO worker processes, and their clean-up at exit.

:class:`WorkerHandle` starts one worker (:mod:`envs_jax.sumo.worker`) in its own session, sends
requests and reads answers with a timeout, and tells a dead or hung worker
(:class:`WorkerDied`, which the bridge answers with a restart) from a worker-side exception
(:class:`SumoWorkerError`, raised with its message on one line). :func:`track` registers an
environment to be closed at exit (``atexit``, and ``SIGTERM`` turned into ``SystemExit`` when no
handler was installed).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from typing import Any

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


class SumoWorkerError(RuntimeError):
    """A worker raised an exception, or kept dying after restarts.

    ``details`` holds the worker's traceback.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class WorkerDied(Exception):
    """A worker process exited, hung or lost its connection (it can be restarted)."""


def exception_line(tb: str) -> str:
    """The exception message of a formatted traceback, on one line."""
    lines = tb.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] and not lines[i][0].isspace() and ": " in lines[i]:
            return " ".join(x.strip() for x in lines[i:] if x.strip())
    return lines[-1] if lines else "unknown error"


class WorkerHandle:
    """The parent's handle on one worker process and its connection."""

    def __init__(self, slot: int, plan: dict[str, Any]) -> None:
        self.slot = slot
        self.plan = plan
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.pending = 0  # requests sent whose answer has not been read yet

    def start(self) -> None:
        """Launch the process and send it the plan (the reply is read by ``recv``)."""
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, WORKER_SCRIPT, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.pending = 0
        self.send("init", self.plan)

    def send(self, cmd: str, arg: Any) -> None:
        try:
            self.conn.send((cmd, arg))
        except (OSError, ValueError, AttributeError) as err:
            raise WorkerDied(f"send failed: {err}") from None
        self.pending += 1

    def recv(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = self.conn.poll(min(1.0, max(0.0, deadline - time.monotonic())))
                if ready:
                    status, payload = self.conn.recv()
                    self.pending -= 1
                    break
            except (EOFError, OSError, AttributeError):
                raise WorkerDied("connection lost") from None
            if self.proc.poll() is not None:
                raise WorkerDied(f"exit status {self.proc.returncode}")
            if time.monotonic() >= deadline:
                raise WorkerDied(f"no answer within {timeout:.0f} s")
        if status == "error":
            raise SumoWorkerError(
                f"SUMO worker {self.slot} failed: {exception_line(payload)}", payload
            )
        return payload

    def drain(self, timeout: float) -> None:
        """Read and drop answers left over from an interrupted call."""
        while self.pending > 0:
            try:
                self.recv(timeout)
            except SumoWorkerError:
                pass

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """Stop the process now and reap it."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def finish(self, grace: float = 2.0) -> None:
        """After a ``close`` request: wait briefly for the process to exit, then kill it."""
        if self.proc is not None and self.proc.poll() is None and self.conn is not None:
            try:
                self.recv(grace)
                self.proc.wait(grace)
            except (WorkerDied, SumoWorkerError, subprocess.TimeoutExpired):
                pass
        self.kill()


_LIVE: weakref.WeakSet = weakref.WeakSet()


def close_all() -> None:
    """Close every open environment of this process (registered with ``atexit``)."""
    for env in list(_LIVE):
        env.close()


_cleanup_installed = False


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    """Once per process: the ``atexit`` hook, and SIGTERM -> SystemExit if it has no handler."""
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(close_all)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)  # so that atexit runs on a plain `kill <pid>`


def track(env: Any) -> None:
    """Close ``env`` (anything with ``close()``) when the process exits; installs the hooks."""
    _install_cleanup()
    _LIVE.add(env)


def untrack(env: Any) -> None:
    """Forget ``env`` (it was closed)."""
    _LIVE.discard(env)
