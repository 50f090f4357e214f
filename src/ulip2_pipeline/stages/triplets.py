"""The triplets stage: one row per object with every modality, readable by pyarrow, pandas and HF datasets."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline import __version__, point_columns
from ulip2_pipeline.accounting import JOIN_REASONS, account_shard, merge_accounts
from ulip2_pipeline.config import default_config
from ulip2_pipeline.failures import Failure
from ulip2_pipeline.quality.flags import (
    OBJECT_FLAGS,
    RECORDED_EARLIER,
    VIEW_FLAGS,
    ObjectQuality,
    object_quality,
    view_flags,
)
from ulip2_pipeline.quality.geometry import shape_fingerprint
from ulip2_pipeline.records import Document
from ulip2_pipeline.settings import QualitySettings, TripletsSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.stages.manifest import read_shard

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"  # 2: quality columns
STAGE = "triplets"
QUALITY_COLUMNS = ("coverage", "visible_fraction", "bbox")  # the render's, per view
# A triplet row's columns that hold one entry per view, aligned (quality.drop_views cuts them all alike).
PER_VIEW_COLUMNS = (
    "images",
    "views",
    "azimuth_deg",
    "elevation_deg",
    "intrinsics",
    "world_to_camera",
    "depth",
    "captions",
    "caption_scores",
    "kept",
    *QUALITY_COLUMNS,
    "view_flags",
)
PROVENANCE_PACKAGES = ("bpy", "trimesh", "torch", "transformers", "open_clip_torch", "pyarrow", "numpy")


def triplet_schema(points: int) -> pa.Schema:
    return pa.schema(
        [
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
            pa.field("object_caption", pa.string()),  # the fuse stage's; null without it
            # quality (README "Quality flags"): per view, then per object
            pa.field("coverage", pa.list_(pa.float32())),
            pa.field("visible_fraction", pa.list_(pa.float32())),
            pa.field("bbox", pa.list_(pa.list_(pa.int32()))),
            pa.field("view_flags", pa.list_(pa.list_(pa.string()))),
            pa.field("flags", pa.list_(pa.string())),
            pa.field("fingerprint", pa.list_(pa.float32())),
        ]
    )


def hf_features(points: int) -> dict:
    """The ``huggingface`` schema metadata: images decode as images, points as fixed-shape arrays."""

    def value(dtype):
        return {"dtype": dtype, "_type": "Value"}

    def seq(feature, length=None):
        out = {"feature": feature, "_type": "List"}
        if length is not None:
            out["length"] = length
        return out

    return {
        "info": {
            "features": {
                "uid": value("string"),
                "category": value("string"),
                "xyz": seq(seq(value("float32"), 3), points),
                "rgb": seq(seq(value("uint8"), 3), points),
                "images": seq({"_type": "Image"}),
                "views": seq(value("int16")),
                "azimuth_deg": seq(value("float64")),
                "elevation_deg": seq(value("float64")),
                "intrinsics": seq(seq(value("float64"), 9)),
                "world_to_camera": seq(seq(value("float64"), 16)),
                "depth": seq(value("binary")),
                "center": seq(value("float64"), 3),
                "scale": value("float64"),
                "up_axis": value("string"),
                "captions": seq(seq(value("string"))),
                "caption_scores": seq(seq(value("float32"))),
                "kept": seq(seq(value("string"))),
                "object_caption": value("string"),
                "coverage": seq(value("float32")),
                "visible_fraction": seq(value("float32")),
                "bbox": seq(seq(value("int32"))),
                "view_flags": seq(seq(value("string"))),
                "flags": seq(value("string")),
                "fingerprint": seq(value("float32")),
            }
        }
    }


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
    columns.append("missing_textures")
    present = set(pq.read_schema(render_path).names)
    columns += [c for c in QUALITY_COLUMNS if c in present]  # a render shard from before them has none
    views = defaultdict(list)
    for row in pq.read_table(render_path, columns=columns).to_pylist():
        scored = ranked.get((row["uid"], row["view"]))
        if scored is not None:
            views[row["uid"]].append((row, scored))
    return {uid: sorted(pairs, key=lambda p: p[0]["view"]) for uid, pairs in views.items()}


def read_object_captions(fused_path) -> dict[str, str]:
    """The fuse stage's caption of each object of a fused shard (none without the stage)."""
    if fused_path is None:
        return {}
    table = pq.read_table(fused_path, columns=["uid", "object_caption"])
    return dict(zip(table.column("uid").to_pylist(), table.column("object_caption").to_pylist()))


def build_triplets(
    points_path, render_path, ranked_path, n_points: int, fused_path=None, quality: QualitySettings | None = None
) -> tuple[pa.Table, dict[str, ObjectQuality]]:
    """Join the three modalities per object; objects missing any of them are left out. ``fused_path``: the fuse
    stage's shard, whose object captions join by uid (null for an object it has none for, and without it).
    Also each object's quality flags (``quality``: the thresholds; the schema's defaults without it)."""
    quality = quality or QualitySettings.from_config(default_config()["quality"])
    object_captions = read_object_captions(fused_path)
    points = pq.read_table(points_path)
    views = _per_object_views(render_path, ranked_path)
    keep = [i for i, uid in enumerate(points.column("uid").to_pylist()) if views.get(uid)]
    points = points.take(pa.array(keep, pa.int64()))
    per_view = defaultdict(list)
    for uid in points.column("uid").to_pylist():
        pairs = views[uid]
        renders = [r for r, _ in pairs]
        per_view["images"].append([{"bytes": r["png"], "path": f"{uid}/{r['view']:03d}.png"} for r in renders])
        for name, source in (
            ("views", "view"),
            ("azimuth_deg", "azimuth_deg"),
            ("elevation_deg", "elevation_deg"),
            ("intrinsics", "intrinsics"),
            ("world_to_camera", "world_to_camera"),
        ):
            per_view[name].append([r[source] for r in renders])
        per_view["depth"].append([r["depth"] for r in renders] if renders[0]["depth"] is not None else None)
        per_view["captions"].append([s["captions"] for _, s in pairs])
        per_view["caption_scores"].append([s["scores"] for _, s in pairs])
        per_view["kept"].append([s["kept"] for _, s in pairs])
        for name in QUALITY_COLUMNS:
            per_view[name].append([r.get(name) for r in renders])
        per_view["view_flags"].append(
            [view_flags(r.get("visible_fraction"), (s["kept"] or [""])[0], quality) for r, s in pairs]
        )
    schema = triplet_schema(n_points)
    columns = {name: pa.array(per_view[name], type=schema.field(name).type) for name in PER_VIEW_COLUMNS}
    shape = (points.num_rows, n_points, 3)
    xyz = point_columns.to_numpy(points, "xyz", np.float32) if points.num_rows else np.zeros(shape, np.float32)
    rgb = point_columns.to_numpy(points, "rgb", np.uint8) if points.num_rows else np.zeros(shape, np.uint8)
    uids = points.column("uid").to_pylist()
    missing = {uid: max((r["missing_textures"] or 0 for r, _ in views[uid]), default=0) for uid in uids}
    qualities = {
        uid: object_quality(flags, coverage, cloud, quality, missing[uid])
        for uid, flags, coverage, cloud in zip(uids, per_view["view_flags"], per_view["coverage"], xyz)
    }
    table = pa.table(
        {
            "uid": points.column("uid"),
            "category": points.column("category"),
            "xyz": point_columns.to_arrow(xyz, pa.float32(), True),
            "rgb": point_columns.to_arrow(rgb, pa.uint8(), True),
            "center": points.column("center").cast(schema.field("center").type),
            "scale": points.column("scale"),
            "up_axis": points.column("up_axis"),
            **columns,
            "object_caption": pa.array([object_captions.get(uid) for uid in uids], pa.string()),
            "flags": pa.array([qualities[uid].flags for uid in uids], schema.field("flags").type),
            "fingerprint": pa.array([shape_fingerprint(cloud).tolist() for cloud in xyz], pa.list_(pa.float32())),
        },
        schema=schema,
    )
    return table, qualities


def quality_counts(table: pa.Table) -> dict[str, dict[str, int]]:
    """Objects and views carrying each flag (every flag listed, 0 included)."""
    objects = Counter(f for flags in table.column("flags").to_pylist() for f in flags)
    views = Counter(f for per_view in table.column("view_flags").to_pylist() for flags in per_view for f in flags)
    return {
        "objects": {flag: objects[flag] for flag in OBJECT_FLAGS},
        "views": {flag: views[flag] for flag in VIEW_FLAGS},
    }


def flag_rows(qualities: dict[str, ObjectQuality], sources: dict[str, str]) -> list[Failure]:
    """A ledger row per flag of every triplet (flags are FLAG_REASONS: they leave nothing out)."""
    return [
        Failure(uid, STAGE, sources.get(uid, ""), flag, found.details[flag])
        for uid, found in qualities.items()
        for flag in found.flags
        if flag not in RECORDED_EARLIER
    ]


def fusion_record(fused_path, table: pa.Table) -> dict:
    """Whether the fuse stage ran for this shard, its model, and how many triplets got an object caption."""
    if fused_path is None:
        return {"ran": False}
    model = (pq.read_schema(fused_path).metadata or {}).get(b"ulip2.model", b"").decode()
    return {"ran": True, "model": model, "object_captions": table.num_rows - table.column("object_caption").null_count}


def _uids(path) -> set[str]:
    return set(pq.read_table(path, columns=["uid"]).column("uid").to_pylist())


def _ledger(path) -> list[dict]:
    return pq.read_table(path, columns=["uid", "reason", "detail"]).to_pylist()


def join_failures(account: Document, sources: dict[str, str]) -> list[Failure]:
    """A triplets ledger row for every object of the shard that is not in its triplets, saying where it left."""
    rows = []
    for uid, fate in sorted(account["left"].items()):
        first_line = fate["detail"].strip().splitlines()[0] if fate["detail"].strip() else ""
        reason = JOIN_REASONS.get(fate["stage"], "not_joined")
        rows.append(
            Failure(
                uid,
                STAGE,
                sources.get(uid, ""),
                reason,
                f"left at the {fate['stage']} stage: {fate['reason']}: {first_line}",
            )
        )
    return rows


@dataclass(frozen=True)
class Inputs:
    manifest: str | Path  # the shard's slice of the manifest
    points: str | Path
    render: str | Path
    captions: str | Path
    ranked: str | Path
    points_failures: str | Path
    render_failures: str | Path
    caption_failures: str | Path
    rank_failures: str | Path
    shard: str
    fused: str | Path | None = None  # the fuse stage's shard, when fuse.enabled

    def ledgers(self) -> dict[str, str | Path]:
        return {
            "points": self.points_failures,
            "render": self.render_failures,
            "caption": self.caption_failures,
            "rank": self.rank_failures,
        }


@dataclass(frozen=True)
class Outputs:
    triplets: str | Path
    failures: str | Path


def run_shard(
    inputs: Inputs,
    settings: TripletsSettings,
    outputs: Outputs,
    *,
    points: int,
    provenance: Mapping[str, Any],
    quality: QualitySettings | None = None,
) -> ShardSummary:
    """Join one shard; every object of the shard that did not make it gets a row in failures/triplets.

    ``points``: the dataset's points per object; ``provenance``: what produced the shard (recorded)."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    table, qualities = build_triplets(inputs.points, inputs.render, inputs.ranked, points, inputs.fused, quality)
    manifest_rows = read_shard(inputs.manifest, inputs.shard)
    present = {
        "points": _uids(inputs.points),
        "render": _uids(inputs.render),
        "caption": _uids(inputs.captions),
        "rank": _uids(inputs.ranked),
        "triplets": set(table.column("uid").to_pylist()),
    }
    sources = {r["uid"]: r["source"] for r in manifest_rows}
    flags = flag_rows(qualities, sources)
    ledgers = {stage: _ledger(path) for stage, path in inputs.ledgers().items()}
    ledgers[STAGE] = [{"uid": f.uid, "reason": f.reason, "detail": f.detail} for f in flags]  # counted as flagged
    account = account_shard([r["uid"] for r in manifest_rows], present, ledgers)
    failures = join_failures(account, sources)
    for failure in failures:
        log.warning("%s: %s: %s", failure.uid, failure.reason, failure.detail)
    accounting = {k: v for k, v in account.items() if k != "left"}
    work = ShardWork(
        table=table,
        counts={
            "objects": len(manifest_rows),
            "triplets": table.num_rows,
            "left": len(failures),
            "flagged": len({f.uid for f in flags}),
        },
        metadata={
            "ulip2.provenance": json.dumps({**provenance, "packages": package_versions()}, sort_keys=True),
            "ulip2.accounting": json.dumps(accounting, sort_keys=True),
            "ulip2.fusion": json.dumps(fusion_record(inputs.fused, table), sort_keys=True),
            "ulip2.quality": json.dumps(quality_counts(table), sort_keys=True),
            "huggingface": json.dumps(hf_features(points)),
        },
        failures=failures + flags,
        row_group_size=settings.row_group_rows,
    )
    return clock.finish(work, outputs.triplets, outputs.failures)


def merged_quality_counts(triplet_paths: list) -> dict[str, dict[str, int]]:
    """The shards' flag counts added up (shards written before the flags count nothing)."""
    total = {"objects": Counter(), "views": Counter()}
    for path in triplet_paths:
        recorded = pq.read_schema(path).metadata.get(b"ulip2.quality")
        for kind, counts in json.loads(recorded or "{}").items():
            total[kind].update(counts)
    return {
        "objects": {flag: total["objects"][flag] for flag in OBJECT_FLAGS},
        "views": {flag: total["views"][flag] for flag in VIEW_FLAGS},
    }


def dataset_summary(manifest_path, manifest_failures_path, triplet_paths: list) -> dict:
    """Objects in, triplets out and failures, per stage; adds up (see ulip2_pipeline.accounting)."""
    accounts = [json.loads(pq.read_schema(p).metadata[b"ulip2.accounting"]) for p in triplet_paths]
    summary = merge_accounts(
        accounts,
        pq.read_table(manifest_failures_path, columns=["reason"]).to_pylist(),
        pq.ParquetFile(manifest_path).metadata.num_rows,
    )
    summary["shards"] = sorted(Path(p).stem for p in triplet_paths)
    summary["quality"] = merged_quality_counts(triplet_paths)
    if not summary["adds_up"]:
        log.error("the per-stage counts do not add up: %s", json.dumps(summary["stages"]))
    return summary
