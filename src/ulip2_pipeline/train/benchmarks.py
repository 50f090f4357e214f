"""Readers for the zero-shot benchmarks users download, and the demo set's held-out objects.

Each reader returns (clouds, labels, class_names), clouds as (xyz, rgb) float32 arrays with
rgb in [0, 1] (0.4 grey where the format has no colour), normalised to the unit sphere and
put in farthest-point order so they match what the encoder trained on.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ulip2_pipeline.settings import BenchmarkSpec
from ulip2_pipeline.stages.points.sampling import farthest_point_order
from ulip2_pipeline.train.splits import holdout

GREY = 0.4
SCANOBJECTNN_CLASSES = [
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
]


def prepare(xyz: np.ndarray, rgb: np.ndarray | None, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.asarray(xyz, dtype=np.float32)[:, :3]
    rgb = np.full_like(xyz, GREY) if rgb is None else np.asarray(rgb, dtype=np.float32)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    xyz = xyz - xyz.mean(axis=0)
    xyz = xyz / max(float(np.linalg.norm(xyz, axis=1).max()), 1e-9)
    order = farthest_point_order(xyz)[:num_points]
    return xyz[order], rgb[order]


def read_demo_heldout(triplet_paths, fraction: float, num_points: int):
    clouds, names = [], []
    for path in triplet_paths:
        table = pq.read_table(path, columns=["uid", "category", "xyz", "rgb"])
        for row in table.to_pylist():
            if row["category"] and holdout(row["uid"], fraction):
                clouds.append(
                    (
                        np.asarray(row["xyz"][:num_points], np.float32),
                        np.asarray(row["rgb"][:num_points], np.float32) / 255.0,
                    )
                )
                names.append(row["category"])
    classes = sorted(set(names))
    return clouds, [classes.index(n) for n in names], classes


def read_modelnet40_ulip(root, num_points: int):
    """ULIP's files: modelnet40_test_8192pts_fps.dat (pickle of point and label lists) and
    modelnet40_shape_names.txt."""
    root = Path(root)
    classes = [line.strip() for line in (root / "modelnet40_shape_names.txt").read_text().splitlines() if line.strip()]
    with open(root / "modelnet40_test_8192pts_fps.dat", "rb") as f:
        points, labels = pickle.load(f)
    clouds = [prepare(p[:, :3], None, num_points) for p in points]
    return clouds, [int(np.asarray(label).reshape(-1)[0]) for label in labels], classes


def _split_entries(split_path, root: Path, num_points: int):
    """OpenShape's split JSON: entries with "category" and "data_path" to a .npy dict (xyz, rgb)."""
    entries = json.loads(Path(split_path).read_text())
    classes = sorted({e["category"] for e in entries})
    clouds, labels = [], []
    for entry in entries:
        data = np.load(root / entry["data_path"], allow_pickle=True).item()
        clouds.append(prepare(data["xyz"], data.get("rgb"), num_points))
        labels.append(classes.index(entry["category"]))
    return clouds, labels, classes


def read_openshape(root, split: str, num_points: int):
    """ModelNet40 or Objaverse-LVIS in OpenShape's 10k format (split JSON + one .npy dict per shape)."""
    root = Path(root)
    return _split_entries(root / split, root, num_points)


def read_scanobjectnn(root, num_points: int, variant: str = "main_split/test_objectdataset.h5"):
    """The official ScanObjectNN h5 files: datasets "data" (N, 2048, 3) and "label" (N,)."""
    import h5py

    with h5py.File(Path(root) / variant, "r") as f:
        data, labels = f["data"][:], f["label"][:]
    clouds = [prepare(points, None, min(num_points, len(points))) for points in data]
    return clouds, [int(label) for label in labels], list(SCANOBJECTNN_CLASSES)


def read_benchmark(spec: BenchmarkSpec, num_points: int, triplet_paths=None, holdout_fraction: float = 0.0):
    kind = spec["format"]
    if kind == "demo_heldout":
        return read_demo_heldout(triplet_paths, holdout_fraction, num_points)
    if kind == "modelnet40_ulip":
        return read_modelnet40_ulip(spec["path"], num_points)
    if kind == "openshape":
        return read_openshape(spec["path"], spec["split"], num_points)
    if kind == "scanobjectnn":
        return read_scanobjectnn(spec["path"], num_points, spec.get("split") or "main_split/test_objectdataset.h5")
    raise ValueError(f"unknown benchmark format {kind!r}")
