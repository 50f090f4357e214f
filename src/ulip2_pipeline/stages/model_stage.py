"""What the model stages (caption, rank, embed) share: per-view failure rows and numerics metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from ulip2_pipeline.devices import is_out_of_memory, run_in_batches
from ulip2_pipeline.failures import Failure
from ulip2_pipeline.progress import Progress
from ulip2_pipeline.stages.views import View

R = TypeVar("R")


def view_failure(view: View, stage: str, source: str | Path, exc: Exception) -> Failure:
    """A view the model could not process even alone: ``out_of_memory`` or ``model_error``, with the exception."""
    reason = "out_of_memory" if is_out_of_memory(exc) else "model_error"
    return Failure(view.uid, stage, str(source), reason, f"view {view.view}: {type(exc).__name__}: {exc}")


def split_failures(views: Sequence[View], results: Sequence[R | Failure]) -> tuple[list[tuple[View, R]], list[Failure]]:
    """(view, result) pairs of the views that worked, and the failure rows of those that did not."""
    done, failed = [], []
    for view, result in zip(views, results):
        (failed.append(result) if isinstance(result, Failure) else done.append((view, result)))
    return done, failed


def process_views(
    views: Sequence[View],
    work: Callable[[Sequence[View]], list[R]],
    batch_size: int,
    stage: str,
    shard: str,
    source: str | Path,
) -> tuple[list[tuple[View, R]], list[Failure]]:
    """Run ``work`` over the views in batches (isolating failing views), logging progress; (done, failed)."""
    results = run_in_batches(
        views,
        work,
        batch_size,
        on_error=lambda view, exc: view_failure(view, stage, source, exc),
        progress=Progress(f"{stage} {shard}", len(views), unit="views"),
    )
    return split_failures(views, results)


def numerics_metadata(device: torch.device | None, dtype: torch.dtype | None, precision: str) -> dict[str, str]:
    """Where and in what dtype the model ran ("none" when the shard had nothing to run on)."""
    return {
        "ulip2.device": device.type if device is not None else "none",
        "ulip2.dtype": str(dtype).removeprefix("torch.") if dtype is not None else "none",
        "ulip2.precision": precision,
    }
