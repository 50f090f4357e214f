"""Launching a training run: in this process for one device, under torchrun for several.

``train.gpus: N`` (N > 1) starts N processes with ``python -m torch.distributed.run
--standalone --nproc_per_node N -m ulip2_pipeline.train --job job.json``; each is one
rank (a GPU with NCCL, or a CPU process with gloo where there is no GPU) and reads
the same job file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.settings import EmbedSettings, TrainSettings
from ulip2_pipeline.train import distributed
from ulip2_pipeline.train.run import run_training

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """Everything a rank needs: input shards, the full train and embed settings, where to write."""

    triplets: list[str]
    embed: list[str]
    train: TrainSettings
    embed_settings: EmbedSettings
    up_axis: str
    out_dir: str
    model: str
    log: str | None = None
    quality: dict | None = None  # QualityFilter.as_config(): flagged data to leave out

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {**vars(self), "train": self.train.as_config(), "embed_settings": self.embed_settings.as_config()}
        path.write_text(json.dumps(fields, indent=2) + "\n")

    @classmethod
    def read(cls, path) -> "TrainJob":
        fields = json.loads(Path(path).read_text())
        fields["train"] = TrainSettings.from_config(fields["train"])
        fields["embed_settings"] = EmbedSettings.from_config(fields["embed_settings"])
        return cls(**fields)


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_rank(job: TrainJob) -> dict:
    """Train as this process's rank (the only one outside torchrun)."""
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(max(1, job.train.threads // ranks))  # the job's CPU threads, shared out
    quality = QualityFilter.from_config(job.quality) if job.quality else None
    summary = run_training(
        job.triplets, job.embed, job.train, job.embed_settings, job.up_axis, job.out_dir, job.model, quality
    )
    # Only on success: a failed rank must exit (torchrun then stops the others), not wait at a barrier.
    distributed.finish()
    return summary


def torchrun_command(job_path: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "ulip2_pipeline.train",
        "--job",
        str(job_path),
    ]


def launch(job: TrainJob) -> None:
    """Run ``job`` on ``job.train.gpus`` ranks."""
    processes = job.train.gpus
    if processes <= 1 or under_torchrun():
        run_rank(job)
        return
    job_path = Path(job.out_dir) / "job.json"
    job.write(job_path)
    command = torchrun_command(job_path, processes)
    log.info("starting %d ranks: %s", processes, " ".join(command))
    subprocess.run(command, check=True)
