"""Glue for the thin scripts under workflow_scripts/: logging into the rule's log file."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def log_to(path: str | Path | None) -> None:
    """Send the package's log records to ``path`` (the rule's log:), warnings also to stderr."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    # Where the job ran: a scheduler's job id and the devices it was given.
    placement = {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS") if k in os.environ}
    logging.getLogger(__name__).info("job environment: %s",
                                     " ".join(f"{k}={v}" for k, v in placement.items()) or "local")
