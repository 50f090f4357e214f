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


class ModelCannotRun(RuntimeError):
    """The model failed on every view it was first given, alone, with one and the same error: the job stops."""


# Views that must have failed alone, all with one error, before the model (not the data) is blamed.
MIN_VIEWS_TO_BLAME_THE_MODEL = 2


def error_signature(exc: Exception) -> tuple[str, str]:
    """The exception's type and message. The view-specific part (``view N:``, the uid) is the failure row's
    ``detail`` prefix, not in the exception: the model is given images, never uids, so an error that is the
    model's reads the same for every view."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)


class _ModelGuard:
    """Watches a shard's opening batches and raises ModelCannotRun when the model, not the data, is at fault.

    The model is blamed when every view of the first batch failed alone, out of memory in
    none, with the same error (``error_signature``). A first batch of one view is not proof
    (a bad view looks the same), so while the opening batches hold fewer than
    ``MIN_VIEWS_TO_BLAME_THE_MODEL`` views the next batch is watched too (``batch_size`` 1);
    a shard with a single view never stops the job, its failure stays a row. Any view that
    works, any out-of-memory failure or a second, different error settles it: data, not
    model, and the guard stands down for the rest of the shard.
    """

    def __init__(
        self,
        stage: str,
        model: str,
        source: str | Path,
        unit: str = "view",
        failure: Callable[[object, Exception], Failure] | None = None,
    ):
        """``unit``: what the items are, in the message (the fuse stage's are objects); ``failure(item, exc)``:
        an item's failure row (``view_failure`` by default)."""
        self.stage, self.model, self.source, self.unit = stage, model, source, unit
        self.failure = failure or (lambda view, exc: view_failure(view, stage, source, exc))
        self.watching = True
        self.batch_errors: list[tuple[View, Exception]] = []  # the current batch's, until after_batch
        self.signature: tuple[str, str] | None = None
        self.first_error: Exception | None = None
        self.views = self.batches = 0

    def on_error(self, view: View, exc: Exception) -> Failure:
        self.batch_errors.append((view, exc))
        return self.failure(view, exc)

    def after_batch(self, batch: Sequence[View], results: list) -> None:
        errors, self.batch_errors = self.batch_errors, []
        if not self.watching:
            return
        signatures = {error_signature(exc) for _, exc in errors}
        if self.signature is not None:
            signatures.add(self.signature)
        if len(errors) < len(batch) or any(is_out_of_memory(exc) for _, exc in errors) or len(signatures) != 1:
            self.watching = False
            return
        self.signature = signatures.pop()
        if self.first_error is None:
            self.first_error = errors[0][1]
        self.views += len(batch)
        self.batches += 1
        if self.views >= MIN_VIEWS_TO_BLAME_THE_MODEL:
            exc = self.first_error
            batches = "the first batch" if self.batches == 1 else f"the first {self.batches} batches"
            raise ModelCannotRun(
                f"{self.stage}: model {self.model} cannot run: every {self.unit} of {batches} ({self.views}) failed "
                f"alone with {type(exc).__name__}: {exc}; no {self.unit} was written"
            ) from exc


def process_views(
    views: Sequence[View],
    work: Callable[[Sequence[View]], list[R]],
    batch_size: int,
    stage: str,
    shard: str,
    source: str | Path,
    model: str,
) -> tuple[list[tuple[View, R]], list[Failure]]:
    """Run ``work`` over the views in batches (isolating failing views), logging progress; (done, failed).

    A view that fails alone is a failure row, unless the model cannot run at all: every view of
    the first batch failed alone with the same error (see ``_ModelGuard``), which raises
    ``ModelCannotRun`` naming ``model``, chained to that error, so the job fails instead of
    reporting success with nothing written."""
    guard = _ModelGuard(stage, model, source)
    results = run_in_batches(
        views,
        work,
        batch_size,
        on_error=guard.on_error,
        progress=Progress(f"{stage} {shard}", len(views), unit="views"),
        after_batch=guard.after_batch,
    )
    return split_failures(views, results)


def numerics_metadata(device: torch.device | None, dtype: torch.dtype | None, precision: str) -> dict[str, str]:
    """Where and in what dtype the model ran ("none" when the shard had nothing to run on)."""
    return {
        "ulip2.device": device.type if device is not None else "none",
        "ulip2.dtype": str(dtype).removeprefix("torch.") if dtype is not None else "none",
        "ulip2.precision": precision,
    }
