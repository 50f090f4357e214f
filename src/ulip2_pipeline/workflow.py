"""Glue for the thin scripts under workflow_scripts/: the job's log file and its settings.

Two kinds of settings reach a job (see ``ulip2_pipeline.settings``). Output settings (a
model, a seed, a resolution) change what a job writes, so rules pass them as
``params:`` (``Settings.output_params``) and Snakemake reruns the job when they change.
Throughput fields (batch sizes, threads, devices, loader workers) change only how fast
it runs; rules leave them out of ``params:`` and the scripts read them from the
configuration, so changing one reruns nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping, TypeVar

from ulip2_pipeline.settings import Settings

HISTORY_BYTES = 2_000_000
S = TypeVar("S", bound=Settings)


def job_settings(kind: type[S], params_section: Mapping[str, Any], config_section: Mapping[str, Any]) -> S:
    """A job's settings: its output settings (``params:``) plus the throughput fields (the configuration)."""
    throughput = {name: config_section[name] for name in kind.throughput_fields()}
    return kind.from_config({**params_section, **throughput})


def log_to(path: str | Path | None) -> None:
    """Send the package's log records to ``path`` (the rule's log:), warnings also to stderr.

    Each attempt starts under a header and follows the earlier attempts' records, so a
    retried job (SLURM or ``--retries``) keeps them. Snakemake deletes a job's log before
    every attempt, so the records are also kept in a hidden sidecar next to it (the
    newest ``HISTORY_BYTES``) and restored from there. An exception that ends the job is
    written to the log with its traceback, not only to Snakemake's stderr.
    """
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        history = path.with_name(f".{path.name}.attempts")
        _restore_earlier_attempts(path, history)
        handlers += [logging.FileHandler(path, mode="a"), logging.FileHandler(history, mode="a")]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    log = logging.getLogger(__name__)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    log.info("===== attempt started %s (pid %d) =====", started, os.getpid())
    # Where the job ran: a scheduler's job id and the devices it was given.
    placement = {
        k: os.environ[k]
        for k in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS")
        if k in os.environ
    }
    log.info("job environment: %s", " ".join(f"{k}={v}" for k, v in placement.items()) or "local")
    sys.excepthook = _log_uncaught


def _restore_earlier_attempts(path: Path, history: Path) -> None:
    if not history.exists():
        return
    earlier = history.read_bytes()[-HISTORY_BYTES:]
    history.write_bytes(earlier)
    if not path.exists() or path.stat().st_size == 0:
        path.write_bytes(earlier)


def _log_uncaught(kind, value, tb) -> None:
    logging.getLogger(__name__).error("the job failed:\n%s", "".join(traceback.format_exception(kind, value, tb)))
    sys.__excepthook__(kind, value, tb)
