"""The dataset card: ``results/{dataset}/README.md`` in the Hugging Face dataset-card format.

Its YAML header's ``configs`` make ``datasets.load_dataset("results/{dataset}")`` load the
triplet shards (and only them: the folder also holds every stage's Parquet files). The body
documents every column, the sizes, the provenance recorded in the shards' ``ulip2.provenance``
metadata and the failure summary of ``summary.json``. It is built from those files alone, so the
same inputs give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.exports.common import read_json
from ulip2_pipeline.records import Document

TRIPLET_GLOB = "triplets/*.parquet"
LOAD_BATCH_ROWS = 32

COLUMN_MEANINGS = {
    "uid": "object id (unique in the dataset)",
    "category": "the source's category (a ShapeNet synset's name, an LVIS class, a folder name), or null",
    "xyz": "surface points, normalised (centre, unit sphere), in farthest-point order: "
    "`xyz[:8192]` and `xyz[:2048]` are the 8k and 2k clouds",
    "rgb": "sRGB colour of each point, 0-255",
    "images": "the rendered views as PNG (`path` is `{uid}/{view:03d}.png`); decoded as images",
    "views": "view index of each entry of the per-view columns",
    "azimuth_deg": "camera azimuth of each view, degrees",
    "elevation_deg": "camera elevation of each view, degrees",
    "intrinsics": "3x3 camera matrix K of each view, row-major (pixels; (0, 0) is the top-left pixel's corner)",
    "world_to_camera": "4x4 world-to-camera matrix of each view, row-major, OpenCV axes (x right, y down, "
    "z forward), from the normalised frame of `xyz`",
    "depth": "depth map of each view (depth presets only, else null): float32 little-endian, height x width "
    "from the top row, distance along the camera axis in normalised units, 0 where no surface",
    "center": "normalisation: normalised = (file coordinates - center) / scale",
    "scale": "normalisation scale (the largest distance of a sample from `center`)",
    "up_axis": "the source's up axis (points are not rotated)",
    "captions": "every caption the captioner wrote for each view",
    "caption_scores": "CLIP cosine similarity of each caption with its view",
    "kept": "the captions kept for each view (the top-k by CLIP score, best first)",
    "object_caption": "one caption of the whole object, distilled from its views' kept captions by the fuse "
    "stage's language model (null without the fuse stage, or where it has none)",
    "coverage": "share of each view's pixels the object covers (its silhouette: render alpha at least 1/2)",
    "visible_fraction": "share of each view's silhouette that differs from a white background by more than "
    "12/255 in some channel",
    "bbox": "each view's silhouette box x0, y0, x1, y1 in pixels, end exclusive (null when the view is empty)",
    "view_flags": "each view's quality flags: blank_view, low_contrast, empty_caption, repetitive_caption, "
    "degenerate_caption",
    "flags": "the object's quality flags: tiny_object, outlier_geometry, missing_texture, and every flag of its views",
    "fingerprint": "rotation-, scale- and translation-invariant shape descriptor from the points (duplicates)",
}

SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]


def size_category(objects: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if objects < limit), "n>100M")


def feature_type(feature: Document) -> str:
    """A Hugging Face feature (its JSON form) in words: ``10000 × 3 × float32``, ``list of Image``."""
    kind = feature.get("_type")
    if kind == "Value":
        return feature["dtype"]
    if kind in ("List", "Sequence", "LargeList"):
        inner = feature_type(feature["feature"])
        length = feature.get("length", -1)
        return f"{length} × {inner}" if length not in (None, -1) else f"list of {inner}"
    return kind or json.dumps(feature)


def _column_types(schema) -> dict[str, str]:
    metadata = schema.metadata or {}
    features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    return {
        field.name: feature_type(features[field.name]) if field.name in features else str(field.type)
        for field in schema
    }


def dataset_facts(triplet_paths: list) -> dict:
    """Schema, sizes and provenance of the triplet shards."""
    paths = sorted(Path(p) for p in triplet_paths)
    schema = pq.read_schema(paths[0]) if paths else None
    objects = views = 0
    per_object = set()
    provenance = []
    for path in paths:
        table = pq.read_table(path, columns=["views"])
        counts = [len(v) for v in table.column("views").to_pylist()]
        objects += len(counts)
        views += sum(counts)
        per_object.update(counts)
        record = json.loads((pq.read_schema(path).metadata or {}).get(b"ulip2.provenance", b"{}"))
        if record not in provenance:
            provenance.append(record)
    return {
        "schema": schema,
        "objects": objects,
        "shards": len(paths),
        "views": views,
        "views_per_object": sorted(per_object),
        "bytes": sum(p.stat().st_size for p in paths),
        "provenance": provenance,
    }


def _header(dataset: str, objects: int) -> str:
    header = {
        "pretty_name": f"{dataset} (ULIP-2 triplets)",
        "tags": ["3d", "point-cloud", "multimodal", "ulip-2"],
        "size_categories": [size_category(objects)],
        # batch_size: datasets' Parquet reader otherwise takes a file's first row-group size as its
        # batch size, and an empty shard's is 0, which it refuses.
        "configs": [
            {
                "config_name": "default",
                "default": True,
                "data_files": [{"split": "train", "path": TRIPLET_GLOB}],
                "batch_size": LOAD_BATCH_ROWS,
            }
        ],
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]


def _features_section(schema) -> list[str]:
    if schema is None:
        return ["No triplet shards."]
    types = _column_types(schema)
    rows = [
        [f"`{name}`", types[name], COLUMN_MEANINGS.get(name, "(not described: a column this card does not know)")]
        for name in schema.names
    ]
    return _table(["column", "type", "meaning"], rows)


def _sizes_section(facts: Document) -> list[str]:
    per_object = facts["views_per_object"]
    spread = (
        "-" if not per_object else (str(per_object[0]) if len(per_object) == 1 else f"{per_object[0]}-{per_object[-1]}")
    )
    return _table(
        ["objects", "shards", "bytes (triplet files)", "views", "views per object"],
        [[facts["objects"], facts["shards"], facts["bytes"], facts["views"], spread]],
    )


def _provenance_section(provenance: list[dict]) -> list[str]:
    lines = []
    if len(provenance) > 1:
        lines += [f"The shards record {len(provenance)} different provenances (made by different settings):", ""]
    for record in provenance:
        preset = dict(record.get("render_preset", {}))
        lines += _table(
            ["what", "value"],
            [
                ["caption model", f"`{record.get('caption_model')}`"],
                ["rank model (CLIP)", f"`{record.get('rank_model')}`"],
                [
                    "render preset",
                    f"`{preset.pop('name', None)}`: "
                    + ", ".join(f"{k} {json.dumps(v)}" for k, v in sorted(preset.items())),
                ],
                ["seed", record.get("seed")],
                ["configuration hash", f"`{record.get('config_hash')}`"],
                ["packages", ", ".join(f"{k} {v}" for k, v in sorted(record.get("packages", {}).items()))],
            ],
        ) + [""]
    return lines or ["No provenance recorded."]


def _failures_section(summary: Document) -> list[str]:
    lines = [
        f"Objects in: **{summary['objects_in']}**; triplets out: **{summary['triplets_out']}**; "
        f"objects that left on the way: **{summary.get('objects_failed', 0)}**.",
        "",
    ]
    rows = [
        [stage, reason, count]
        for stage, reasons in summary.get("failures", {}).items()
        for reason, count in reasons.items()
    ]
    if not rows:
        return lines + ["No object failed."]
    lines += _table(["stage it left at", "reason", "objects"], rows) + [""]
    lines.append(
        "Each object that left has a row, with a detail a person can act on, in "
        "`failures/{stage}/{shard}.parquet` (`failures/manifest.parquet` for objects never had), and "
        "`failures/triplets/{shard}.parquet` lists every object of a shard that is not in its triplets."
    )
    return lines


def dataset_card(dataset: str, triplet_paths: list, summary_path) -> str:
    facts = dataset_facts(triplet_paths)
    summary = read_json(summary_path)
    body = [
        f"# {dataset}: ULIP-2 triplets",
        "",
        "One row per 3D object with every modality: a coloured point cloud, rendered views and their "
        "captions ranked by CLIP, made by the ulip2-pipeline Snakemake workflow.",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("path/to/results/{dataset}", split="train")   # this folder',
        'ds[0]["images"][0]                    # a PIL image',
        'ds.with_format("numpy")[0]["xyz"]     # (points, 3) float32',
        "```",
        "",
        f"The `configs` above point at `{TRIPLET_GLOB}`; the folder's other Parquet files are the "
        "stages' own outputs (points, render, captions, ranked, embed/..., failures/...).",
        "",
        "## Features",
        "",
        *_features_section(facts["schema"]),
        "",
        "## Sizes",
        "",
        *_sizes_section(facts),
        "",
        "## Provenance",
        "",
        *_provenance_section(facts["provenance"]),
        "",
        "## Failures",
        "",
        *_failures_section(summary),
        "",
    ]
    return _header(dataset, facts["objects"]) + "\n" + "\n".join(body)


def write_dataset_card(dataset: str, triplet_paths: list, summary_path, out) -> None:
    write_bytes(dataset_card(dataset, triplet_paths, summary_path).encode(), out)
