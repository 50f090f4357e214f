"""Which device a model job uses, and batches that shrink when the device runs out of memory.

Several GPU jobs may run at once on one host (``snakemake --resources gpu=N``), and
Snakemake does not tell a job which GPU is its own. Each job therefore claims one:
it takes an exclusive lock file per visible device (``/tmp/ulip2-gpu-locks`` by
default, ``ULIP2_GPU_LOCK_DIR`` to change it) and keeps it for its lifetime. With
``gpu=N`` no more than N jobs run, so a free device is always found; under SLURM
each job sees only its own GPU and takes it. Without a GPU, jobs use the CPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
_held_locks: list = []  # kept open for the life of the process: closing would release the claim


def visible_gpus() -> list[str]:
    """Names of the GPUs this process may use: CUDA_VISIBLE_DEVICES entries, else indices."""
    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def claim_device(gpus: Sequence[str], lock_dir: str | Path | None = None, wait_s: float = 600.0) -> int | None:
    """Index (into ``gpus``) of a device no other job holds, claimed until this process exits."""
    if not gpus:
        return None
    lock_dir = Path(lock_dir or os.environ.get("ULIP2_GPU_LOCK_DIR", "/tmp/ulip2-gpu-locks"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for index, name in enumerate(gpus):
            handle = open(lock_dir / f"gpu-{name}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _held_locks.append(handle)
            return index
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU among {list(gpus)} after {wait_s:.0f} s (lock files in {lock_dir})")
        time.sleep(1.0)


def pick_device(preference: str = "auto") -> torch.device:
    """``auto``: a claimed GPU when there is one, else the CPU; ``cpu`` / ``cuda`` force it."""
    if preference == "cpu":
        return torch.device("cpu")
    gpus = visible_gpus()
    if not gpus:
        if preference == "cuda":
            raise RuntimeError("device 'cuda' asked for, but torch sees no GPU")
        return torch.device("cpu")
    index = claim_device(gpus)
    log.info("using GPU %s (cuda:%d)", gpus[index], index)
    return torch.device(f"cuda:{index}")


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def run_in_batches(
    items: Sequence[T],
    work: Callable[[Sequence[T]], list[R]],
    batch_size: int,
    on_error: Callable[[T, Exception], R] | None = None,
    progress=None,
    after_batch: Callable[[Sequence[T], list[R]], None] | None = None,
) -> list[R]:
    """``work`` over consecutive batches, one result per item, in order.

    A batch that runs out of memory is halved and retried. Without ``on_error`` any
    other error (or running out of memory on a single item) propagates. With it, a
    batch that fails is retried one item at a time, so one bad item cannot sink its
    neighbours, and an item that still fails alone (out of memory included) gets
    ``on_error(item, exception)`` as its result. ``progress`` (a Progress) advances per batch.
    ``after_batch(batch, its results)`` is called once each batch's results are final (after
    any halving and retrying); what it raises ends the run.
    """
    results: list[R] = []
    start = 0
    while start < len(items):
        batch = items[start : start + batch_size]
        try:
            batch_results = work(batch)
        except Exception as exc:  # noqa: BLE001 - sorted below: halve, isolate or re-raise
            _release_memory(exc)
            if is_out_of_memory(exc) and len(batch) > 1:
                batch_size = max(1, batch_size // 2)
                log.warning("out of memory on a batch of %d; going on with batches of %d", len(batch), batch_size)
                continue
            if on_error is None:
                raise
            if len(batch) > 1:
                log.warning(
                    "a batch of %d failed (%s: %s); retrying its items one at a time",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                batch_results = _one_at_a_time(batch, work, on_error)
            else:
                batch_results = [on_error(batch[0], exc)]
        results.extend(batch_results)
        if after_batch is not None:
            after_batch(batch, batch_results)
        start += len(batch)
        if progress is not None:
            progress.advance(len(batch))
    return results


def _one_at_a_time(
    batch: Sequence[T], work: Callable[[Sequence[T]], list[R]], on_error: Callable[[T, Exception], R]
) -> list[R]:
    results: list[R] = []
    for item in batch:
        try:
            results.extend(work([item]))
        except Exception as exc:  # noqa: BLE001 - the item's failure is recorded by on_error
            _release_memory(exc)
            results.append(on_error(item, exc))
    return results


def _release_memory(exc: BaseException) -> None:
    if is_out_of_memory(exc) and torch.cuda.is_available():
        torch.cuda.empty_cache()
