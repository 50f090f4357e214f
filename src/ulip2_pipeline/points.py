"""The points stage: one Parquet shard of FPS-ordered, coloured, normalised surface samples."""
from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__, point_columns
from .atomic import write_parquet
from .config import config_hash
from .failures import Failure, ObjectFailure, write_failures
from .manifest import read_shard
from .meshes import load_parts
from .sampling import SampledCloud, sample_object

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
STAGE = "points"
ROW_GROUP_ROWS = 64

POINTS_SCHEMA = pa.schema([
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
])


def object_seed(seed: int, uid: str) -> np.random.SeedSequence:
    """A random stream per object that depends only on the dataset seed and the uid."""
    uid_key = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "little")
    return np.random.SeedSequence([seed, uid_key])


def points_for_object(source: str | Path, uid: str, expected_bytes: int | None, points_cfg: dict,
                      seed: int) -> tuple[SampledCloud, int]:
    """Sample one object; raise ObjectFailure with a reason when it cannot be done."""
    path = Path(source)
    if not path.exists():
        raise ObjectFailure("missing_source", f"{path} does not exist")
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        raise ObjectFailure("source_changed", f"{path} is {path.stat().st_size} bytes, the manifest recorded "
                            f"{expected_bytes}; rebuild the manifest")
    parts = load_parts(path, points_cfg["max_faces"])
    cloud = sample_object(parts, points_cfg["count"], object_seed(seed, uid), points_cfg["default_rgb"])
    return cloud, sum(len(p.faces) for p in parts)


def points_table(rows: list[dict], clouds: list[SampledCloud], faces: list[int], up_axis: str, count: int) -> pa.Table:
    xyz = np.stack([c.xyz for c in clouds]) if clouds else np.zeros((0, count, 3), np.float32)
    rgb = np.stack([c.rgb for c in clouds]) if clouds else np.zeros((0, count, 3), np.uint8)
    return pa.table({
        "uid": [r["uid"] for r in rows],
        "category": [r["category"] for r in rows],
        "xyz": point_columns.to_arrow(xyz, pa.float32()),
        "rgb": point_columns.to_arrow(rgb, pa.uint8()),
        "colour_sources": [c.colour_sources for c in clouds],
        "center": [c.center.tolist() for c in clouds],
        "scale": [c.scale for c in clouds],
        "up_axis": [up_axis] * len(rows),
        "num_faces": faces,
        "source_sha256": [r["sha256"] for r in rows],
    }, schema=POINTS_SCHEMA)


def run_points_shard(manifest: str | Path, shard: str, dataset_cfg: dict, out: str | Path,
                     failures_out: str | Path) -> dict:
    """Sample every object of ``shard``; failures go to the ledger, never abort the shard."""
    points_cfg, seed = dataset_cfg["points"], dataset_cfg["seed"]
    done_rows, clouds, faces, failures = [], [], [], []
    started = time.perf_counter()
    for row in read_shard(manifest, shard):
        t0 = time.perf_counter()
        try:
            cloud, n_faces = points_for_object(row["source"], row["uid"], row["bytes"], points_cfg, seed)
        except ObjectFailure as failure:
            log.warning("%s: %s: %s", row["uid"], failure.reason, failure.detail)
            failures.append(Failure(row["uid"], STAGE, row["source"], failure.reason, failure.detail))
            continue
        except Exception as exc:  # noqa: BLE001 - one object's bug must not lose the shard
            detail = "".join(traceback.format_exception(exc))[-2000:]
            log.error("%s: unexpected error\n%s", row["uid"], detail)
            failures.append(Failure(row["uid"], STAGE, row["source"], "internal_error", detail))
            continue
        done_rows.append(row)
        clouds.append(cloud)
        faces.append(n_faces)
        log.info("%s: %d faces, colour from %s, %.1f ms", row["uid"], n_faces,
                 "+".join(cloud.colour_sources), 1000 * (time.perf_counter() - t0))

    metadata = {
        "ulip2.schema_version": SCHEMA_VERSION,
        "ulip2.stage": STAGE,
        "ulip2.shard": shard,
        "ulip2.points": json.dumps({**points_cfg, "seed": seed, "order": "farthest_point",
                                    "rgb": "uint8 sRGB 0-255", "normalisation": "(world - center) / scale"}),
        "ulip2.config_hash": config_hash(dataset_cfg),
        "ulip2.version": __version__,
    }
    table = points_table(done_rows, clouds, faces, dataset_cfg["up_axis"], points_cfg["count"])
    write_failures(failures, failures_out, {"ulip2.stage": STAGE, "ulip2.shard": shard})
    write_parquet(table, out, metadata, row_group_size=ROW_GROUP_ROWS)
    summary = {"shard": shard, "objects": len(done_rows) + len(failures), "sampled": len(done_rows),
               "failed": len(failures), "seconds": round(time.perf_counter() - started, 3)}
    log.info("shard summary: %s", json.dumps(summary))
    return summary


def read_points(path: str | Path) -> dict[str, np.ndarray]:
    """A points shard as arrays: uid (M,), xyz (M, N, 3) float32, rgb (M, N, 3) uint8."""
    table = pq.read_table(path, columns=["uid", "xyz", "rgb"])
    return {"uid": np.array(table.column("uid").to_pylist(), dtype=object),
            "xyz": point_columns.to_numpy(table, "xyz", np.float32),
            "rgb": point_columns.to_numpy(table, "rgb", np.uint8)}
