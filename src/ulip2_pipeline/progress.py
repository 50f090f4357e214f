"""Progress a person can follow in a shard job's log: done / total, rate and time left.

A line is logged when the first item is done, then at most every ``interval_s``
seconds (30 by default; ``ULIP2_PROGRESS_INTERVAL_S`` changes it), and when the last
item is done, so a log shows how far a job is without one line per object.
"""

from __future__ import annotations

import logging
import os
import time

DEFAULT_INTERVAL_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "objects",
        interval_s: float | None = None,
        logger: logging.Logger | None = None,
        clock=time.monotonic,
    ):
        self.what, self.total, self.unit = what, total, unit
        self.interval_s = (
            float(os.environ.get("ULIP2_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S)) if interval_s is None else interval_s
        )
        self.log = logger or logging.getLogger("ulip2_pipeline.progress")
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.last_report: float | None = None

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if self.last_report is None or self.done >= self.total or now - self.last_report >= self.interval_s:
            self.last_report = now
            self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-9)
        rate = self.done / elapsed
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        text = f"{self.what}: {self.done}/{self.total} {self.unit}{share}, {rate:.2f} {self.unit}/s"
        if self.done >= self.total:
            return f"{text}, done in {_duration(elapsed)}"
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{text}, about {_duration(left)} left" if left != float("inf") else text
