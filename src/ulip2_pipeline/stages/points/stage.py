"""The points stage: one Parquet shard of FPS-ordered, coloured, normalised surface samples.

Each object is read and sampled in a supervised worker process (``points_worker``):
a hang, a memory blow-up or a crash costs that object, never the shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline import point_columns
from ulip2_pipeline.config import config_hash
from ulip2_pipeline.failures import Failure, ObjectFailure
from ulip2_pipeline.progress import Progress
from ulip2_pipeline.records import Row
from ulip2_pipeline.settings import DatasetSettings, PointsSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.source_check import check_source
from ulip2_pipeline.stages.manifest import read_shard
from ulip2_pipeline.stages.points.readers import read_parts
from ulip2_pipeline.stages.points.sampling import SampledCloud, sample_object
from ulip2_pipeline.supervisor import SupervisedWorker, log_tail

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"  # 2: the reader column
STAGE = "points"
ROW_GROUP_ROWS = 64

POINTS_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("xyz", pa.list_(pa.list_(pa.float32(), 3)), nullable=False),
        pa.field("rgb", pa.list_(pa.list_(pa.uint8(), 3)), nullable=False),
        pa.field("colour_sources", pa.list_(pa.string())),
        pa.field("center", pa.list_(pa.float64(), 3)),
        pa.field("scale", pa.float64()),
        pa.field("up_axis", pa.string()),
        pa.field("num_faces", pa.int64()),
        pa.field("source_sha256", pa.string()),
        pa.field("reader", pa.string()),
    ]
)
LOG_TAIL_CHARS = 2000


def object_seed(seed: int, uid: str) -> np.random.SeedSequence:
    """A random stream per object that depends only on the dataset seed and the uid."""
    uid_key = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "little")
    return np.random.SeedSequence([seed, uid_key])


class ObjectPoints(NamedTuple):
    cloud: SampledCloud
    num_faces: int
    reader: str  # "trimesh" or "blender"


def points_for_object(
    source: str | Path, uid: str, expected_sha256: str | None, points: PointsSettings, seed: int, up_axis: str = "y"
) -> ObjectPoints:
    """Sample one object (in this process); raise ObjectFailure with a reason when it cannot be done."""
    path = Path(source)
    check_source(path, expected_sha256)
    parts, reader = read_parts(path, points.max_faces, up_axis)
    cloud = sample_object(parts, points.count, object_seed(seed, uid), points.default_rgb)
    return ObjectPoints(cloud, sum(len(p.faces) for p in parts), reader)


def points_table(rows: list[dict], results: list[ObjectPoints], up_axis: str, count: int) -> pa.Table:
    clouds = [r.cloud for r in results]
    xyz = np.stack([c.xyz for c in clouds]) if clouds else np.zeros((0, count, 3), np.float32)
    rgb = np.stack([c.rgb for c in clouds]) if clouds else np.zeros((0, count, 3), np.uint8)
    return pa.table(
        {
            "uid": [r["uid"] for r in rows],
            "category": [r["category"] for r in rows],
            "xyz": point_columns.to_arrow(xyz, pa.float32()),
            "rgb": point_columns.to_arrow(rgb, pa.uint8()),
            "colour_sources": [c.colour_sources for c in clouds],
            "center": [c.center.tolist() for c in clouds],
            "scale": [c.scale for c in clouds],
            "up_axis": [up_axis] * len(rows),
            "num_faces": [r.num_faces for r in results],
            "source_sha256": [r["sha256"] for r in rows],
            "reader": [r.reader for r in results],
        },
        schema=POINTS_SCHEMA,
    )


def points_worker(dataset: DatasetSettings) -> SupervisedWorker:
    """The child (``stages/points/worker.py``) that reads and samples one object per request, started on first use."""
    return SupervisedWorker(
        "ulip2_pipeline.stages.points.worker",
        {"points": dataset.points, "seed": dataset.seed, "up_axis": dataset.up_axis},
        activity="reading and sampling",
        max_memory_mb=dataset.points.max_memory_mb,
    )


def _worker_output(path: Path) -> str:
    text = log_tail(path, LOG_TAIL_CHARS).strip()
    return f"\n--- worker output ---\n{text}" if text else ""


def _sample_one(worker: SupervisedWorker, row: Row, object_log: Path, timeout_s: float) -> ObjectPoints | Failure:
    task = {"uid": row["uid"], "path": row["source"], "sha256": row["sha256"], "log": str(object_log)}
    started = time.perf_counter()
    try:
        result = worker.call(task, timeout_s)
    except ObjectFailure as failure:
        log.warning("%s: %s: %s", row["uid"], failure.reason, failure.detail.strip())
        return Failure(row["uid"], STAGE, row["source"], failure.reason, failure.detail + _worker_output(object_log))
    log.info(
        "%s: %d faces (%s), colour from %s, %.1f ms",
        row["uid"],
        result.num_faces,
        result.reader,
        "+".join(result.cloud.colour_sources),
        1000 * (time.perf_counter() - started),
    )
    return result


@dataclass(frozen=True)
class Inputs:
    manifest: str | Path  # the shard's slice of the manifest
    shard: str


@dataclass(frozen=True)
class Outputs:
    points: str | Path
    failures: str | Path


def run_shard(inputs: Inputs, dataset: DatasetSettings, outputs: Outputs) -> ShardSummary:
    """Sample every object of the shard; failures go to the ledger, never abort the shard."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    points = dataset.points
    done_rows, results, failures = [], [], []
    worker = points_worker(dataset)
    with tempfile.TemporaryDirectory(prefix="ulip2-points-") as tmp:
        try:
            rows = read_shard(inputs.manifest, inputs.shard)
            progress = Progress(f"points {inputs.shard}", len(rows))
            for row in rows:
                result = _sample_one(worker, row, Path(tmp) / f"{row['uid']}.log", points.timeout_s)
                if isinstance(result, Failure):
                    failures.append(result)
                else:
                    done_rows.append(row)
                    results.append(result)
                progress.advance()
        finally:
            worker.stop()

    recipe = {
        **points.as_config(),
        "seed": dataset.seed,
        "order": "farthest_point",
        "rgb": "uint8 sRGB 0-255",
        "normalisation": "(world - center) / scale",
    }
    work = ShardWork(
        table=points_table(done_rows, results, dataset.up_axis, points.count),
        counts={
            "objects": len(done_rows) + len(failures),
            "sampled": len(done_rows),
            "failed": len(failures),
            "readers": {r: sum(x.reader == r for x in results) for r in ("trimesh", "blender")},
            "worker_startups_s": [round(s, 2) for s in worker.startups],
            "peak_worker_mb": round(worker.peak_rss_mb),
        },
        metadata={"ulip2.points": json.dumps(recipe), "ulip2.config_hash": config_hash(dataset.as_config())},
        failures=failures,
        row_group_size=ROW_GROUP_ROWS,
    )
    return clock.finish(work, outputs.points, outputs.failures)


def read_points(path: str | Path) -> dict[str, np.ndarray]:
    """A points shard as arrays: uid (M,), xyz (M, N, 3) float32, rgb (M, N, 3) uint8."""
    table = pq.read_table(path, columns=["uid", "xyz", "rgb"])
    if table.num_rows == 0:  # an empty shard: the point count is in its metadata
        count = json.loads(pq.read_schema(path).metadata[b"ulip2.points"])["count"]
        return {
            "uid": np.array([], dtype=object),
            "xyz": np.zeros((0, count, 3), np.float32),
            "rgb": np.zeros((0, count, 3), np.uint8),
        }
    return {
        "uid": np.array(table.column("uid").to_pylist(), dtype=object),
        "xyz": point_columns.to_numpy(table, "xyz", np.float32),
        "rgb": point_columns.to_numpy(table, "rgb", np.uint8),
    }
