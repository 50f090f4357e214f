"""The render stage's worker: one Blender start-up per shard, a kill-and-restart per hang (see ..supervisor)."""
from __future__ import annotations

from pathlib import Path

from ..supervisor import SupervisedWorker


class RenderWorker(SupervisedWorker):
    """A ``python -m ulip2_pipeline.render.worker`` child, started on first use."""

    def __init__(self, settings: dict, threads: int, log_dir: Path, startup_timeout_s: float = 300.0,
                 max_memory_mb: float | None = None):
        super().__init__("ulip2_pipeline.render.worker",
                         {"settings": settings, "threads": threads, "worker_log": str(Path(log_dir) / "_worker.log")},
                         activity="import and render", startup_timeout_s=startup_timeout_s,
                         max_memory_mb=max_memory_mb)

    def render(self, task: dict, timeout_s: float) -> dict:
        """Render one object; raise ObjectFailure on its failure, timeout or a worker crash."""
        return self.call(task, timeout_s)
