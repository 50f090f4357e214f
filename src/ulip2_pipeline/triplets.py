"""The triplets stage: one row per object with every modality, readable by pyarrow, pandas and HF datasets."""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__, point_columns
from .atomic import write_parquet

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
PROVENANCE_PACKAGES = ("bpy", "trimesh", "torch", "transformers", "open_clip_torch", "pyarrow", "numpy")


def triplet_schema(points: int) -> pa.Schema:
    return pa.schema([
        pa.field("uid", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("xyz", pa.list_(pa.list_(pa.float32(), 3), points)),
        pa.field("rgb", pa.list_(pa.list_(pa.uint8(), 3), points)),
        pa.field("images", pa.list_(pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())]))),
        pa.field("views", pa.list_(pa.int16())),
        pa.field("azimuth_deg", pa.list_(pa.float64())),
        pa.field("elevation_deg", pa.list_(pa.float64())),
        pa.field("intrinsics", pa.list_(pa.list_(pa.float64(), 9))),
        pa.field("world_to_camera", pa.list_(pa.list_(pa.float64(), 16))),
        pa.field("depth", pa.list_(pa.binary())),
        pa.field("center", pa.list_(pa.float64(), 3)),
        pa.field("scale", pa.float64()),
        pa.field("up_axis", pa.string()),
        pa.field("captions", pa.list_(pa.list_(pa.string()))),
        pa.field("caption_scores", pa.list_(pa.list_(pa.float32()))),
        pa.field("kept", pa.list_(pa.list_(pa.string()))),
    ])


def hf_features(points: int) -> dict:
    """The ``huggingface`` schema metadata: images decode as images, points as fixed-shape arrays."""
    def value(dtype):
        return {"dtype": dtype, "_type": "Value"}

    def seq(feature, length=None):
        out = {"feature": feature, "_type": "List"}
        if length is not None:
            out["length"] = length
        return out

    return {"info": {"features": {
        "uid": value("string"), "category": value("string"),
        "xyz": seq(seq(value("float32"), 3), points), "rgb": seq(seq(value("uint8"), 3), points),
        "images": seq({"_type": "Image"}), "views": seq(value("int16")),
        "azimuth_deg": seq(value("float64")), "elevation_deg": seq(value("float64")),
        "intrinsics": seq(seq(value("float64"), 9)), "world_to_camera": seq(seq(value("float64"), 16)),
        "depth": seq(value("binary")), "center": seq(value("float64"), 3), "scale": value("float64"),
        "up_axis": value("string"), "captions": seq(seq(value("string"))),
        "caption_scores": seq(seq(value("float32"))), "kept": seq(seq(value("string"))),
    }}}


def package_versions() -> dict[str, str]:
    versions = {"ulip2_pipeline": __version__}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def _per_object_views(render_path, ranked_path) -> dict[str, list[tuple[dict, dict]]]:
    """(render row, ranked row) pairs per uid, in view order; views without ranked captions are dropped."""
    ranked = {(r["uid"], r["view"]): r for r in pq.read_table(ranked_path).to_pylist()}
    columns = ["uid", "view", "png", "depth", "azimuth_deg", "elevation_deg", "intrinsics", "world_to_camera"]
    views = defaultdict(list)
    for row in pq.read_table(render_path, columns=columns).to_pylist():
        scored = ranked.get((row["uid"], row["view"]))
        if scored is not None:
            views[row["uid"]].append((row, scored))
    return {uid: sorted(pairs, key=lambda p: p[0]["view"]) for uid, pairs in views.items()}


def build_triplets(points_path, render_path, ranked_path, n_points: int) -> pa.Table:
    """Join the three modalities per object; objects missing any of them are left out."""
    points = pq.read_table(points_path)
    views = _per_object_views(render_path, ranked_path)
    keep = [i for i, uid in enumerate(points.column("uid").to_pylist()) if views.get(uid)]
    points = points.take(pa.array(keep, pa.int64()))
    per_view = defaultdict(list)
    for uid in points.column("uid").to_pylist():
        pairs = views[uid]
        renders = [r for r, _ in pairs]
        per_view["images"].append([{"bytes": r["png"], "path": f"{uid}/{r['view']:03d}.png"} for r in renders])
        for name, source in (("views", "view"), ("azimuth_deg", "azimuth_deg"), ("elevation_deg", "elevation_deg"),
                             ("intrinsics", "intrinsics"), ("world_to_camera", "world_to_camera")):
            per_view[name].append([r[source] for r in renders])
        per_view["depth"].append([r["depth"] for r in renders] if renders[0]["depth"] is not None else None)
        per_view["captions"].append([s["captions"] for _, s in pairs])
        per_view["caption_scores"].append([s["scores"] for _, s in pairs])
        per_view["kept"].append([s["kept"] for _, s in pairs])
    schema = triplet_schema(n_points)
    columns = {name: pa.array(per_view[name], type=schema.field(name).type)
               for name in ("images", "views", "azimuth_deg", "elevation_deg", "intrinsics", "world_to_camera",
                            "depth", "captions", "caption_scores", "kept")}
    return pa.table({
        "uid": points.column("uid"), "category": points.column("category"),
        "xyz": point_columns.to_arrow(point_columns.to_numpy(points, "xyz", np.float32), pa.float32(), True),
        "rgb": point_columns.to_arrow(point_columns.to_numpy(points, "rgb", np.uint8), pa.uint8(), True),
        "center": points.column("center").cast(schema.field("center").type), "scale": points.column("scale"),
        "up_axis": points.column("up_axis"), **columns,
    }, schema=schema)


def run_triplets_shard(points_path, render_path, ranked_path, shard: str, provenance: dict, n_points: int,
                       row_group_rows: int, out) -> dict:
    table = build_triplets(points_path, render_path, ranked_path, n_points)
    metadata = {
        "ulip2.schema_version": SCHEMA_VERSION, "ulip2.stage": "triplets", "ulip2.shard": shard,
        "ulip2.provenance": json.dumps({**provenance, "packages": package_versions()}, sort_keys=True),
        "huggingface": json.dumps(hf_features(n_points)),
    }
    write_parquet(table, out, metadata, row_group_size=row_group_rows)
    summary = {"shard": shard, "triplets": table.num_rows}
    log.info("shard summary: %s", json.dumps(summary))
    return summary


def dataset_summary(manifest_path, triplet_paths: list, failure_paths: list) -> dict:
    """Objects in, triplets out, failures by stage and reason, and the shard list."""
    manifest = pq.read_table(manifest_path, columns=["uid", "shard"])
    failures: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failed_uids: dict[str, set] = defaultdict(set)
    for path in failure_paths:
        for row in pq.read_table(path, columns=["uid", "stage", "reason"]).to_pylist():
            failures[row["stage"]][row["reason"]] += 1
            failed_uids[row["stage"]].add(row["uid"])
    shards = sorted({Path(p).stem for p in triplet_paths})
    triplets = sum(pq.ParquetFile(p).metadata.num_rows for p in triplet_paths)
    return {
        "objects_in": manifest.num_rows, "triplets_out": triplets, "shards": shards,
        "failures": {stage: dict(sorted(reasons.items())) for stage, reasons in sorted(failures.items())},
        "objects_failed_by_stage": {stage: len(uids) for stage, uids in sorted(failed_uids.items())},
    }
