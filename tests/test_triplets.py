"""Triplets, summary and embeddings, on the demo run's real outputs (exports: test_exports.py, loader: test_loader.py)."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ulip2_pipeline.accounting import FLAG_REASONS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def results(demo_run):
    workdir, config, _ = demo_run
    return workdir / "results" / "demo", config


def expected_triplets(results):
    _, config = results
    return 6 * config["datasets"]["demo"]["source"]["objects_per_class"]


def shards(results_dir, stage):
    return sorted((results_dir / stage).glob("*.parquet"))


def test_triplets_read_with_pyarrow_pandas_and_hf_datasets(results):
    import datasets

    results_dir, _ = results
    paths = shards(results_dir, "triplets")
    table = pq.read_table(paths[0])
    assert table.num_rows > 0
    frame = pd.read_parquet(paths[0])
    assert list(frame.columns) == table.schema.names
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in paths], split="train")
    assert len(ds) == expected_triplets(results)  # every demo object but the broken one
    row = ds[0]
    assert isinstance(row["images"][0], Image.Image)
    assert len(row["images"]) == 3
    arrays = ds.with_format("numpy")[0]
    assert arrays["xyz"].shape == (10000, 3)
    assert arrays["xyz"].dtype == np.float32
    assert arrays["rgb"].shape == (10000, 3)
    assert 0 <= arrays["rgb"].min()
    assert arrays["rgb"].max() <= 255
    assert len(row["captions"]) == 3
    assert all(len(c) == 10 for c in row["captions"])
    assert all(len(k) == 1 for k in row["kept"])


def test_triplet_metadata_records_schema_and_provenance(results):
    results_dir, config = results
    shard = pq.ParquetFile(shards(results_dir, "triplets")[0])
    metadata = shard.schema_arrow.metadata
    assert metadata[b"ulip2.schema_version"] == b"2"
    provenance = json.loads(metadata[b"ulip2.provenance"])
    assert provenance["caption_model"] == config["caption"]["model"]
    assert provenance["rank_model"].startswith(config["rank"]["arch"])
    assert provenance["render_preset"]["views"] == 3
    assert provenance["seed"] == 0
    assert {"bpy", "torch", "transformers", "open_clip_torch", "ulip2_pipeline"} <= set(provenance["packages"])
    assert len(provenance["config_hash"]) == 16
    assert shard.metadata.num_row_groups == -(-shard.metadata.num_rows // 4)  # row_group_rows: 4


def test_summary_counts_objects_triplets_and_failures(results):
    results_dir, _ = results
    summary = json.loads((results_dir / "summary.json").read_text())
    assert summary["objects_in"] == expected_triplets(results) + 1
    assert summary["triplets_out"] == expected_triplets(results)
    assert summary["failures"] == {"points": {"unreadable": 1}}  # it left there; render is not charged again
    assert summary["adds_up"]
    assert summary["objects_failed"] == 1
    left = [
        r
        for shard in summary["shards"]
        for r in pq.read_table(results_dir / "failures" / "triplets" / f"{shard}.parquet").to_pylist()
        if r["reason"] not in FLAG_REASONS  # quality flags: those objects are triplets
    ]
    assert [(r["uid"], r["reason"]) for r in left] == [("broken_000.glb", "no_points")]
    assert summary["shards"] == sorted(p.stem for p in (results_dir / "triplets").glob("*.parquet"))


def test_embeddings_cover_every_view_and_kept_caption(results):
    results_dir, config = results
    embed_dir = results_dir / "embed" / config["embed"]["name"]
    for triplet_path in shards(results_dir, "triplets"):
        triplets = pq.read_table(triplet_path, columns=["uid", "views", "kept"]).to_pylist()
        embeddings = pq.read_table(embed_dir / triplet_path.name).to_pylist()
        assert [t["uid"] for t in triplets] == [e["uid"] for e in embeddings]
        for t, e in zip(triplets, embeddings):
            assert len(e["image_embeddings"]) == len(t["views"])
            assert e["captions"] == [c for kept in t["kept"] for c in kept]
            vectors = np.asarray(e["image_embeddings"] + e["caption_embeddings"])
            np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
