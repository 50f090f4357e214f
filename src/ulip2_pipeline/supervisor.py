"""One object at a time in a supervised child process: a hang, a memory blow-up or a crash costs
one object, never the shard.

The stage (the parent) starts ``python -m <module> FD`` on first use and sends it one
task at a time over a socket pair. While the child works, the parent watches the clock
and the child's resident memory: past the object's time limit or the memory limit it
kills the child, the object becomes a failure (``timeout`` / ``out_of_memory``), and the
next object starts a fresh child. A child that dies by itself is ``worker_crashed``.
``serve`` is the child's side of the same protocol.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

import psutil

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.records import Message

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often the parent looks at the child's memory while it works


class SupervisedWorker:
    """A ``python -m module`` child, started on first use and restarted after each kill or crash."""

    def __init__(
        self,
        module: str,
        hello: Message,
        activity: str,
        startup_timeout_s: float = 300.0,
        max_memory_mb: float | None = None,
        env: dict[str, str] | None = None,
    ):
        self.module, self.hello, self.activity = module, hello, activity
        self.startup_timeout_s, self.max_memory_mb, self.env = startup_timeout_s, max_memory_mb, env
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.startups: list[float] = []
        self.peak_rss_mb = 0.0

    def _start(self) -> None:
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, str(child.fileno())],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        child.close()
        self.conn = Connection(parent.detach())
        started = time.perf_counter()
        self.conn.send(self.hello)
        if not self.conn.poll(self.startup_timeout_s):
            self.stop(graceful=False)
            raise RuntimeError(f"the {self.module} worker did not start within {self.startup_timeout_s} s")
        try:
            self.conn.recv()
        except (EOFError, ConnectionResetError) as exc:
            code = self.process.wait()
            self.process, self.conn = None, None
            raise RuntimeError(f"the {self.module} worker exited with status {code} while starting") from exc
        self.startups.append(time.perf_counter() - started)
        log.info("%s worker %d ready in %.2f s", self.module, self.process.pid, self.startups[-1])

    def call(self, task: Message, timeout_s: float) -> object:
        """Run one task; its result, or ObjectFailure on its failure, a timeout, too much memory or a crash."""
        if self.process is None:
            self._start()
        try:
            self.conn.send(task)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child is gone: the wait below reports the crash
        outcome = self._wait(timeout_s)
        if outcome is not None:
            self.stop(graceful=False)
            raise outcome
        try:
            reply = self.conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            code = self.process.wait()
            self.process, self.conn = None, None
            raise ObjectFailure(
                "worker_crashed",
                f"the worker exited while on this object: {describe_exit(code)}; the shard goes on in a fresh worker",
            ) from None
        if "failure" in reply:
            raise ObjectFailure(*reply["failure"])
        return reply["ok"]

    def _wait(self, timeout_s: float) -> ObjectFailure | None:
        """Wait for a reply (or the child's end); a failure to raise if the child must be killed."""
        deadline = time.monotonic() + timeout_s
        try:
            watched = psutil.Process(self.process.pid)
        except psutil.Error:
            watched = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ObjectFailure(
                    "timeout",
                    f"{self.activity} took longer than {timeout_s:g} s; the worker was "
                    "killed and the shard goes on in a fresh one",
                )
            if self.conn.poll(min(POLL_S, remaining)):
                return None
            if watched is not None and self.max_memory_mb is not None:
                try:
                    rss_mb = watched.memory_info().rss / 2**20
                except psutil.Error:
                    continue  # exiting: the next poll sees the end of the connection
                self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
                if rss_mb > self.max_memory_mb:
                    return ObjectFailure(
                        "out_of_memory",
                        f"{self.activity} used {rss_mb:.0f} MB, over the limit of "
                        f"{self.max_memory_mb:g} MB (max_memory_mb); the worker was killed and the "
                        "shard goes on in a fresh one",
                    )

    def stop(self, graceful: bool = True) -> None:
        if self.process is None:
            return
        if graceful and self.process.poll() is None:
            try:
                self.conn.send(None)
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.conn.close()
        self.process, self.conn = None, None


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    hint = " (the kernel's out-of-memory killer sends this)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


def log_tail(path: str | Path, chars: int) -> str:
    """The last ``chars`` characters of a task's log file ("" when there is none)."""
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def redirect_output(path: str) -> None:
    """Send the process's fd 1 and 2 (C libraries' output included) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(conn: Connection, setup: Callable[[dict], Callable[[dict], object]]) -> None:
    """The child's loop: ``setup(hello)`` once, then one reply per task until told to stop.

    A task's ``log`` key (optional) names the file that receives the process's output
    while it works on that task, so a failure can be explained from its own log.
    """
    hello = conn.recv()
    if hello.get("worker_log"):
        redirect_output(hello["worker_log"])
    handle = setup(hello)
    conn.send({"ready": True})
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the supervisor is gone (killed job): nothing left to do
            return
        if task is None:
            return
        if task.get("log"):
            redirect_output(task["log"])
        try:
            reply = {"ok": handle(task)}
        except ObjectFailure as failure:
            reply = {"failure": (failure.reason, failure.detail)}
        except MemoryError:
            reply = {"failure": ("out_of_memory", "the worker ran out of memory (MemoryError)")}
        except Exception as exc:  # noqa: BLE001 - reported to the supervisor, which records it
            reply = {"failure": ("internal_error", "".join(traceback.format_exception(exc))[-2000:])}
        sys.stdout.flush()
        sys.stderr.flush()
        conn.send(reply)


def main(setup: Callable[[dict], Callable[[dict], object]]) -> None:
    """Entry point of a worker module: ``python -m module FD``."""
    serve(Connection(int(sys.argv[1])), setup)
