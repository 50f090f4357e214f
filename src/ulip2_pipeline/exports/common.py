"""Small helpers shared by the exports: streaming triplet rows, .npy bytes, JSON written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.quality.filters import FLAG_COLUMNS, QualityFilter
from ulip2_pipeline.stages.triplets import PER_VIEW_COLUMNS


def iter_rows(parquet_path, columns: list[str], batch_size: int = 16) -> Iterator[dict]:
    """Rows of a shard as dicts, a few at a time (a triplet row holds every view's PNG)."""
    for batch in pq.ParquetFile(parquet_path).iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


def iter_kept_rows(
    parquet_path, columns: list[str], quality: QualityFilter | None, batch_size: int = 16
) -> Iterator[dict]:
    """``iter_rows`` of the objects ``quality`` keeps, their per-view columns cut to the views that stay."""
    if quality is None or not quality.active:
        yield from iter_rows(parquet_path, columns, batch_size)
        return
    wanted = list(dict.fromkeys([*columns, "uid", "views", *FLAG_COLUMNS]))
    for row in iter_rows(parquet_path, wanted, batch_size):
        kept = quality.select(row, PER_VIEW_COLUMNS)
        if kept is not None:
            yield kept


def npy_bytes(value) -> bytes:
    """``np.save`` into memory; a dict is pickled inside, for ``np.load(path, allow_pickle=True).item()``."""
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=isinstance(value, dict))
    return buffer.getvalue()


def write_json(data, out, indent: int | None = None) -> None:
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True, indent=indent) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())
