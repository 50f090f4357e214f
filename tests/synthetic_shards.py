"""Small triplet and embedding shards in the pipeline's real schemas, written without running it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.stages.embed import EMBED_SCHEMA
from ulip2_pipeline.stages.triplets import triplet_schema

CATEGORIES = ("mug", "chair", "lamp", "ball")


def triplet_rows(shard: int, count: int, points: int, views: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for i in range(count):
        category = CATEGORIES[(shard + i) % len(CATEGORIES)]
        rows.append(
            {
                "uid": f"{category}_{shard}_{i:03d}",
                "category": category,
                "xyz": rng.normal(size=(points, 3)).astype(np.float32).tolist(),
                "rgb": rng.integers(0, 256, size=(points, 3)).tolist(),
                "views": list(range(views)),
                "kept": [[f"a {category}, view {v}"] for v in range(views)],
            }
        )
    return rows


def embed_rows(rows: list[dict], dim: int, rng: np.random.Generator) -> list[dict]:
    def unit(n):
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()

    return [
        {
            "uid": row["uid"],
            "views": row["views"],
            "image_embeddings": unit(len(row["views"])),
            "caption_views": row["views"],
            "captions": [k[0] for k in row["kept"]],
            "caption_embeddings": unit(len(row["views"])),
        }
        for row in rows
    ]


def write_shards(
    root: Path, counts, points: int = 256, views: int = 2, dim: int = 32, row_group_rows: int = 4, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Triplet shards (``counts`` objects each; 0 makes an empty shard) and their embedding shards."""
    rng = np.random.default_rng(seed)
    (root / "triplets").mkdir(parents=True, exist_ok=True)
    (root / "embed").mkdir(parents=True, exist_ok=True)
    triplets, embeds = [], []
    for shard, count in enumerate(counts):
        rows = triplet_rows(shard, count, points, views, rng)
        name = f"{shard:05d}.parquet"
        write_parquet(
            pa.Table.from_pylist(rows, schema=triplet_schema(points)),
            root / "triplets" / name,
            {"ulip2.stage": "triplets"},
            row_group_size=row_group_rows,
        )
        write_parquet(
            pa.Table.from_pylist(embed_rows(rows, dim, rng), schema=EMBED_SCHEMA),
            root / "embed" / name,
            {"ulip2.stage": "embed"},
        )
        triplets.append(root / "triplets" / name)
        embeds.append(root / "embed" / name)
    return triplets, embeds
