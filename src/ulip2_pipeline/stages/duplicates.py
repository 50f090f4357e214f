"""The dataset's duplicates table: which objects have the same shape as an earlier one.

Dataset-wide by nature, so it is its own small rule over every triplet shard's
``fingerprint`` column (``quality.geometry.shape_fingerprint`` of the points), not a
triplets column: a new shard would otherwise rewrite every triplet shard. "Earlier" is
manifest order (shards in name order, rows in shard order), so the first copy is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.quality.geometry import find_duplicates, fingerprint_distance

log = logging.getLogger(__name__)

DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),
        pa.field("distance", pa.float32()),
    ]
)


def read_fingerprints(triplet_paths: list) -> tuple[list[str], np.ndarray]:
    """Every triplet's uid and fingerprint, in manifest order."""
    uids, rows = [], []
    for path in sorted(triplet_paths, key=lambda p: Path(p).stem):
        table = pq.read_table(path, columns=["uid", "fingerprint"])
        uids += table.column("uid").to_pylist()
        rows += table.column("fingerprint").to_pylist()
    if not rows:
        return uids, np.zeros((0, 0), np.float32)
    return uids, np.asarray(rows, dtype=np.float32)


def duplicates_table(triplet_paths: list, threshold: float) -> pa.Table:
    uids, fingerprints = read_fingerprints(triplet_paths)
    found = find_duplicates(uids, fingerprints, threshold=threshold) if uids else {}
    index = {uid: i for i, uid in enumerate(uids)}
    rows = [
        {
            "uid": uid,
            "duplicate_of": first,
            "distance": fingerprint_distance(fingerprints[index[uid]], fingerprints[index[first]]),
        }
        for uid, first in sorted(found.items(), key=lambda item: index[item[0]])
    ]
    log.info("%d of %d objects are duplicates of an earlier one (distance <= %g)", len(rows), len(uids), threshold)
    return pa.Table.from_pylist(rows, schema=DUPLICATES_SCHEMA)


def write_duplicates(triplet_paths: list, threshold: float, target: str | Path) -> pa.Table:
    table = duplicates_table(triplet_paths, threshold)
    write_parquet(table, target, {"ulip2.duplicate_distance": str(threshold)})
    return table


def read_duplicates(path: str | Path | None) -> dict[str, str]:
    """uid -> the uid it duplicates (empty without a table)."""
    if path is None:
        return {}
    table = pq.read_table(path, columns=["uid", "duplicate_of"])
    return dict(zip(table.column("uid").to_pylist(), table.column("duplicate_of").to_pylist()))
