"""The failure ledger: one row per object a stage could not process, with a reason.

A bad object never fails its shard; it lands here with a reason a person can act
on, and the shard's job still succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ulip2_pipeline.atomic import write_parquet

FAILURE_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("source", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class Failure:
    uid: str
    stage: str
    source: str
    reason: str  # short, stable category, e.g. "unreadable", "empty", "no_area"
    detail: str  # what happened, for a person: the error text or the log tail


class ObjectFailure(Exception):
    """Raised while processing one object; becomes a Failure row, never a crashed shard."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def write_failures(failures: list[Failure], target: str | Path, metadata: dict[str, str] | None = None) -> None:
    columns = {name: [getattr(f, name) for f in failures] for name in FAILURE_SCHEMA.names}
    write_parquet(pa.table(columns, schema=FAILURE_SCHEMA), target, metadata)
