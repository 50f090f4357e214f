"""Triplet shard benchmark: write and read MB/s, and loader samples/s with 0 and 2 workers.

Builds a synthetic shard shaped like the real thing (points from the points stage's
own sampler, 12 PNG views per object) with the triplet stage's schema and writer.
Prints one JSON document. Usage: python benchmarks/triplets_bench.py [--objects N] [--views V]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.point_columns import to_arrow
from ulip2_pipeline.stages.triplets import hf_features, triplet_schema
from ulip2_pipeline.train.loader import TripletDataset


def synthetic_table(objects: int, views: int, size: int = 224) -> pa.Table:
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(objects, 10000, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (objects, 10000, 3), dtype=np.uint8)
    pngs = []
    for v in range(views):
        canvas = np.full((size, size, 3), 255, np.uint8)
        canvas[40:180, 30 + v : 190] = rng.integers(0, 256, (140, 160 - v, 3), dtype=np.uint8) // 8 * 8
        out = io.BytesIO()
        Image.fromarray(canvas).save(out, format="PNG")
        pngs.append(out.getvalue())
    schema = triplet_schema(10000)
    per_object = {
        "images": [[{"bytes": pngs[v], "path": f"obj{i}/{v:03d}.png"} for v in range(views)] for i in range(objects)],
        "views": [list(range(views))] * objects,
        "azimuth_deg": [[30.0 * v for v in range(views)]] * objects,
        "elevation_deg": [[20.0] * views] * objects,
        "intrinsics": [[[1.0] * 9] * views] * objects,
        "world_to_camera": [[[1.0] * 16] * views] * objects,
        "depth": [None] * objects,
        "captions": [[[f"a caption {k}" for k in range(10)]] * views] * objects,
        "caption_scores": [[[0.1] * 10] * views] * objects,
        "kept": [[["a caption 0"]] * views] * objects,
    }
    return pa.table(
        {
            "uid": [f"obj{i}" for i in range(objects)],
            "category": ["thing"] * objects,
            "xyz": to_arrow(xyz, pa.float32(), True),
            "rgb": to_arrow(rgb, pa.uint8(), True),
            "center": [[0.0, 0.0, 0.0]] * objects,
            "scale": [1.0] * objects,
            "up_axis": ["y"] * objects,
            **{name: pa.array(values, type=schema.field(name).type) for name, values in per_object.items()},
        },
        schema=schema,
    )


def loader_rate(path: Path, workers: int, num_points: int) -> float:
    dataset = TripletDataset([path] * 4, num_points=num_points, shuffle_buffer=64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, num_workers=workers)
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch["uid"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=256)
    parser.add_argument("--views", type=int, default=12)
    args = parser.parse_args()
    table = synthetic_table(args.objects, args.views)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "00000.parquet"
        start = time.perf_counter()
        write_parquet(table, path, {"huggingface": json.dumps(hf_features(10000))}, row_group_size=32)
        write_s = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
        start = time.perf_counter()
        pq.read_table(path)
        read_s = time.perf_counter() - start
        result = {
            "benchmark": "triplets",
            "objects": args.objects,
            "views": args.views,
            "file_mb": round(size_mb, 1),
            "in_memory_mb": round(table.nbytes / 2**20, 1),
            "write_mb_per_s": round(size_mb / write_s, 1),
            "read_mb_per_s": round(size_mb / read_s, 1),
            "loader_samples_per_s": {f"workers_{w}": round(loader_rate(path, w, 10000), 1) for w in (0, 2)},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
