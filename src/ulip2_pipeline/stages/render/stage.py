"""The render stage: every object of a shard, every view, into one Parquet file."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline.config import config_hash
from ulip2_pipeline.failures import Failure, ObjectFailure
from ulip2_pipeline.progress import Progress
from ulip2_pipeline.records import Message, Row
from ulip2_pipeline.settings import DatasetSettings, RenderSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.source_check import check_source
from ulip2_pipeline.stages.manifest import read_shard
from ulip2_pipeline.stages.render.cameras import orbit_cameras
from ulip2_pipeline.supervisor import SupervisedWorker, log_tail

log = logging.getLogger(__name__)

STAGE = "render"
SCHEMA_VERSION = "2"  # 2: coverage, visible_fraction, bbox
LOG_TAIL_CHARS = 3000

RENDER_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("view", pa.int16(), nullable=False),
        pa.field("azimuth_deg", pa.float64()),
        pa.field("elevation_deg", pa.float64()),
        pa.field("distance", pa.float64()),
        pa.field("fov_deg", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("intrinsics", pa.list_(pa.float64(), 9)),
        pa.field("world_to_camera", pa.list_(pa.float64(), 16)),
        pa.field("png", pa.binary(), nullable=False),
        pa.field("depth", pa.binary()),
        pa.field("center", pa.list_(pa.float64(), 3)),
        pa.field("scale", pa.float64()),
        pa.field("normalisation_source", pa.string()),
        pa.field("up_axis", pa.string()),
        pa.field("missing_textures", pa.int32()),
        # quality.views: the silhouette's share of the image, the share of it a viewer can tell from
        # a white background, and its x0, y0, x1, y1 in pixels (null when nothing was hit)
        pa.field("coverage", pa.float32()),
        pa.field("visible_fraction", pa.float32()),
        pa.field("bbox", pa.list_(pa.int32())),  # 4 values; not fixed-size: pyarrow cannot read null ones back
    ]
)


def read_normalisations(points_path: str | Path | None) -> dict[str, tuple[list[float], float]]:
    """center and scale of every object the points stage sampled, so both stages share one frame."""
    if points_path is None or not Path(points_path).exists():
        return {}
    table = pq.read_table(points_path, columns=["uid", "center", "scale"])
    return {
        uid: (center, scale)
        for uid, center, scale in zip(
            table.column("uid").to_pylist(), table.column("center").to_pylist(), table.column("scale").to_pylist()
        )
    }


def _view_rows(row: Row, result: Message, settings: RenderSettings, up_axis: str) -> list[dict]:
    cameras = orbit_cameras(
        settings.views,
        settings.elevation_deg,
        settings.fov_deg,
        settings.resolution,
        up_axis,
        settings.distance,
    )
    return [
        {
            "uid": row["uid"],
            "category": row["category"],
            "view": cam.view,
            "azimuth_deg": cam.azimuth_deg,
            "elevation_deg": cam.elevation_deg,
            "distance": cam.distance,
            "fov_deg": cam.fov_deg,
            "width": cam.width,
            "height": cam.height,
            "intrinsics": cam.intrinsics.reshape(-1).tolist(),
            "world_to_camera": cam.world_to_camera.reshape(-1).tolist(),
            "png": view["png"],
            "depth": view["depth"],
            "center": result["center"],
            "scale": result["scale"],
            "normalisation_source": result["normalisation_source"],
            "up_axis": up_axis,
            "missing_textures": result["missing_textures"],
            "coverage": view["quality"].coverage,
            "visible_fraction": view["quality"].visible_fraction,
            "bbox": list(view["quality"].bbox) if view["quality"].bbox else None,
        }
        for cam, view in zip(cameras, result["views"])
    ]


def render_worker(settings: RenderSettings, log_dir: Path) -> SupervisedWorker:
    """The Blender child (``stages/render/worker.py``): one start-up per shard, a kill-and-restart per hang."""
    return SupervisedWorker(
        "ulip2_pipeline.stages.render.worker",
        {"settings": settings, "threads": settings.threads, "worker_log": str(Path(log_dir) / "_worker.log")},
        activity="import and render",
        max_memory_mb=settings.max_memory_mb,
    )


def _render_one(
    worker: SupervisedWorker, row: Row, task: Message, settings: RenderSettings
) -> tuple[list[dict], list[Failure], dict | None]:
    """The view rows of one object, its failure or flag rows, and its timings (None when it failed)."""
    object_log = Path(task["log"])
    started = time.perf_counter()
    try:
        # That it exists; its content is compared in the worker, under the time limit.
        check_source(row["source"], None)
        result = worker.call(task, settings.timeout_s)
    except ObjectFailure as failure:
        detail = f"{failure.detail}\n--- Blender log ({object_log}) ---\n{log_tail(object_log, LOG_TAIL_CHARS)}"
        log.warning("%s: %s: %s", row["uid"], failure.reason, failure.detail.strip())
        return [], [Failure(row["uid"], STAGE, row["source"], failure.reason, detail)], None
    flags = []
    if result["missing_textures"]:
        # Rendered with the fallback colour, and flagged so a person can fix the asset.
        log.warning("%s: missing_texture: %d texture file(s) not found", row["uid"], result["missing_textures"])
        flags.append(
            Failure(
                row["uid"],
                STAGE,
                row["source"],
                "missing_texture",
                f"{result['missing_textures']} texture file(s) not found; rendered with the fallback "
                f"colour {list(settings.missing_texture_rgb)}\n--- Blender log ({object_log}) ---\n"
                f"{log_tail(object_log, LOG_TAIL_CHARS)}",
            )
        )
    else:
        object_log.unlink(missing_ok=True)
    log.info(
        "%s: %d views, %d triangles, import %.2f s, setup %.2f s, render %.2f s",
        row["uid"],
        len(result["views"]),
        result["triangles"],
        result["import_s"],
        result["setup_s"],
        result["render_s"],
    )
    timing = {
        "import_s": result["import_s"],
        "setup_s": result["setup_s"],
        "render_s": result["render_s"],
        "total_s": time.perf_counter() - started,
    }
    return _view_rows(row, result, settings, task["up_axis"]), flags, timing


@dataclass(frozen=True)
class Inputs:
    manifest: str | Path  # the shard's slice of the manifest
    points: str | Path | None  # the points shard, for each object's normalisation (None: the render's own)
    shard: str


@dataclass(frozen=True)
class Outputs:
    render: str | Path
    failures: str | Path
    logs: str | Path  # a folder for each failed or flagged object's Blender log


def run_shard(inputs: Inputs, dataset: DatasetSettings, settings: RenderSettings, outputs: Outputs) -> ShardSummary:
    """Render every object of the shard; bad objects become failure rows, the shard always completes."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    log_dir = Path(outputs.logs)
    log_dir.mkdir(parents=True, exist_ok=True)
    normalisations = read_normalisations(inputs.points)
    rows, failures, timings = [], [], []
    worker = render_worker(settings, log_dir)
    try:
        shard_rows = read_shard(inputs.manifest, inputs.shard)
        progress = Progress(f"render {inputs.shard}", len(shard_rows))
        for row in shard_rows:
            task = {
                "uid": row["uid"],
                "path": row["source"],
                "sha256": row["sha256"],
                "up_axis": dataset.up_axis,
                "log": str(log_dir / f"{row['uid']}.log"),
                "default_rgb": list(dataset.points.default_rgb),
            }
            task["center"], task["scale"] = normalisations.get(row["uid"], (None, None))
            views, flags, timing = _render_one(worker, row, task, settings)
            rows += views
            failures += flags
            if timing:
                timings.append(timing)
            progress.advance()
    finally:
        worker.stop()

    work = ShardWork(
        table=pa.Table.from_pylist(rows, schema=RENDER_SCHEMA),
        counts={
            "rendered": len(timings),
            "failed": len({f.uid for f in failures if f.reason != "missing_texture"}),
            "worker_startups_s": [round(s, 2) for s in worker.startups],
            "mean_object_s": round(float(np.mean([t["total_s"] for t in timings])), 3) if timings else None,
        },
        metadata={
            "ulip2.render": json.dumps(settings.as_config()),
            "ulip2.config_hash": config_hash([dataset.as_config(), settings.as_config()]),
            "ulip2.bpy_version": version("bpy"),
            "ulip2.depth": "float32 little-endian, height x width from the top row, distance along the camera "
            "axis in normalised units; 0 where no surface",
        },
        failures=failures,
        row_group_size=max(1, settings.views) * 16,
    )
    return clock.finish(work, outputs.render, outputs.failures)
