"""The one shard runner: what every stage's shard does around its own work.

A stage's ``run_shard`` does its work and returns a ``ShardWork`` (its table, failures,
own metadata and counts); ``finish_shard`` adds the metadata every shard carries
(schema version, package version, stage, shard), writes the failure ledger and the
Parquet file atomically (with its content digest), and logs one summary line.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from ulip2_pipeline import __version__
from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.failures import Failure, write_failures


@dataclass
class ShardWork:
    """What a stage made of one shard."""

    table: pa.Table
    counts: dict[str, Any]  # the stage's own figures for the summary (objects, views, failures, ...)
    metadata: dict[str, str] = field(default_factory=dict)  # the stage's own provenance (model, settings, ...)
    failures: list[Failure] = field(default_factory=list)
    row_group_size: int | None = None


@dataclass(frozen=True)
class ShardSummary:
    """One shard's figures: ``summary["views"]`` reads a count; ``as_dict()`` is the logged line."""

    stage: str
    shard: str
    seconds: float
    counts: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, **self.counts, "seconds": self.seconds}


class ShardClock:
    """Started where a stage's shard starts; its ``finish`` writes the outputs."""

    def __init__(self, stage: str, schema_version: str, shard: str, log: logging.Logger):
        """``log``: the stage's own logger, which the summary line goes to."""
        self.stage, self.schema_version, self.shard, self.log = stage, schema_version, shard, log
        self.started = time.perf_counter()

    def finish(self, work: ShardWork, out: str | Path, failures_out: str | Path | None = None) -> ShardSummary:
        """Write the failure ledger (when the stage has one) and the Parquet shard; log and return the summary."""
        common = {"ulip2.stage": self.stage, "ulip2.shard": self.shard}
        if failures_out is not None:
            write_failures(work.failures, failures_out, common)
        elif work.failures:
            raise ValueError(f"the {self.stage} stage has no failure ledger, but reported {len(work.failures)}")
        metadata = {
            "ulip2.schema_version": self.schema_version,
            **common,
            **work.metadata,
            "ulip2.version": __version__,
        }
        write_parquet(work.table, out, metadata, row_group_size=work.row_group_size)
        summary = ShardSummary(self.stage, self.shard, round(time.perf_counter() - self.started, 3), work.counts)
        self.log.info("shard summary: %s", json.dumps(summary.as_dict()))
        return summary
