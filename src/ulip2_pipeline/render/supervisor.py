"""Supervises the render worker: one Blender start-up per shard, a kill-and-restart per hang."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from ..failures import ObjectFailure

log = logging.getLogger(__name__)


class RenderWorker:
    """A ``python -m ulip2_pipeline.render.worker`` child, started on first use."""

    def __init__(self, settings: dict, threads: int, log_dir: Path, startup_timeout_s: float = 300.0):
        self.settings, self.threads, self.log_dir = settings, threads, log_dir
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.startups: list[float] = []

    def _start(self) -> None:
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ulip2_pipeline.render.worker", str(child.fileno())],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        self.conn = Connection(parent.detach())
        started = time.perf_counter()
        self.conn.send({"settings": self.settings, "threads": self.threads,
                        "worker_log": str(self.log_dir / "_worker.log")})
        if not self.conn.poll(self.startup_timeout_s):
            self.stop(graceful=False)
            raise RuntimeError(f"the render worker did not start within {self.startup_timeout_s} s")
        self.conn.recv()
        self.startups.append(time.perf_counter() - started)
        log.info("render worker %d ready in %.2f s", self.process.pid, self.startups[-1])

    def render(self, task: dict, timeout_s: float) -> dict:
        """Render one object; raise ObjectFailure on its failure, timeout or a worker crash."""
        if self.process is None:
            self._start()
        try:
            self.conn.send(task)
            ready = self.conn.poll(timeout_s)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            ready = True  # the recv below reports the crash
        if not ready:
            self.stop(graceful=False)
            raise ObjectFailure("timeout", f"import and render took longer than {timeout_s:g} s; the worker "
                                "was killed and restarted for the rest of the shard")
        try:
            reply = self.conn.recv()
        except (EOFError, ConnectionResetError):
            code = self.process.wait()
            self.process, self.conn = None, None
            raise ObjectFailure("worker_crashed", f"Blender exited with status {code} while on this object")
        if "failure" in reply:
            raise ObjectFailure(*reply["failure"])
        return reply["ok"]

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
