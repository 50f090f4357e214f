"""Held-out 3D→text and 3D→image retrieval: the metrics on hand-made features with known ranks, and the
held-out pairs read from small shards in the pipeline's real schemas."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_shards import triplet_rows

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.stages.embed import EMBED_SCHEMA
from ulip2_pipeline.stages.triplets import triplet_schema
from ulip2_pipeline.train import retrieval
from ulip2_pipeline.train.retrieval import (
    MISMATCH,
    NO_CAPTION,
    NO_EMBEDDING,
    heldout_pairs,
    heldout_retrieval,
    retrieval_metrics,
)
from ulip2_pipeline.train.splits import holdout

FRACTION = 0.5
POINTS = 64
DIM = 16

# --- the metrics ---


def queries_with_ranks(ranks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets the unit axes; query i scores 1 on its own target and 2 on the ``ranks[i] - 1`` targets
    after it (cyclically), so its true target has exactly that rank."""
    count = len(ranks)
    targets = torch.eye(count)
    queries = torch.eye(count)
    for i, rank in enumerate(ranks):
        for step in range(1, rank):
            queries[i, (i + step) % count] = 2.0
    return queries, targets


def test_a_perfect_match_ranks_every_target_first_whatever_the_scale():
    targets = torch.randn(8, 5)
    result = retrieval_metrics(3 * targets, targets)
    assert result == {
        "r1": 100.0,
        "r5": 100.0,
        "r10": 100.0,
        "median_rank": 1.0,
        "mean_rank": 1.0,
        "samples": 8,
        "chance_r1": 12.5,
    }


def test_a_reversed_match_ranks_every_true_target_last():
    count = 12
    targets = torch.eye(count)
    queries = 1 - torch.eye(count)  # scores 0 on its own target and 1 / sqrt(11) on every other
    result = retrieval_metrics(queries, targets)
    assert result["r1"] == result["r5"] == result["r10"] == 0.0
    assert result["median_rank"] == result["mean_rank"] == count


def test_known_ranks_give_their_recalls_median_and_mean():
    ranks = [1, 2, 3, 1, 6, 2, 11, 10, 12, 4, 5, 1]
    result = retrieval_metrics(*queries_with_ranks(ranks), ks=(1, 2, 5, 10))
    assert result["r1"] == 25.0  # 3 of 12
    assert result["r2"] == 41.67  # 5 of 12
    assert result["r5"] == 66.67  # 8 of 12
    assert result["r10"] == 83.33  # 10 of 12
    assert result["median_rank"] == 3.5
    assert result["mean_rank"] == 4.83  # 58 / 12
    assert result["samples"] == 12
    assert result["chance_r1"] == 8.33


def test_ties_count_against_the_model():
    targets = torch.eye(4)
    targets[1] = targets[0]  # two objects with the same caption
    queries = torch.eye(4)
    queries[1] = queries[0]
    result = retrieval_metrics(queries, targets)
    # Queries 0 and 1 tie their true target with the other's: rank 2, not 1.
    assert result["r1"] == 50.0
    assert result["mean_rank"] == (2 + 2 + 1 + 1) / 4
    everything_equal = retrieval_metrics(torch.ones(5, 3), torch.ones(5, 3))
    assert everything_equal["r1"] == 0.0
    assert everything_equal["median_rank"] == 5


def test_a_query_without_finite_features_ranks_last():
    queries, targets = torch.eye(3, 5), torch.eye(3, 5)  # 3 objects, 5-d features: the worst rank is 3, not 5
    queries[1] = float("nan")
    result = retrieval_metrics(queries, targets)
    assert result["mean_rank"] == 1.67  # (1 + 3 + 1) / 3
    assert result["r1"] == round(100 * 2 / 3, 2)


def test_ranks_agree_with_a_brute_force_count_across_chunks(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    queries, targets = torch.randn(37, 6, generator=generator), torch.randn(37, 6, generator=generator)
    q = torch.nn.functional.normalize(queries, dim=-1)
    t = torch.nn.functional.normalize(targets, dim=-1)
    scores = q @ t.t()
    brute = [sum(1 for j in range(37) if scores[i, j] >= scores[i, i]) for i in range(37)]
    monkeypatch.setattr(retrieval, "RANK_CHUNK", 5)
    result = retrieval_metrics(queries, targets)
    assert result["mean_rank"] == round(float(np.mean(brute)), 2)
    assert result["median_rank"] == float(np.median(brute))
    assert result["r5"] == round(100 * float(np.mean([r <= 5 for r in brute])), 2)


def test_features_of_different_widths_are_refused():
    with pytest.raises(ValueError, match="8 dims and the CLIP targets 16"):
        retrieval_metrics(torch.randn(4, 8), torch.randn(4, 16))
    with pytest.raises(ValueError, match="want \\(N, D\\)"):
        retrieval_metrics(torch.randn(4, 8), torch.randn(5, 8))


# --- the held-out pairs, from shards ---


def unit(rng: np.random.Generator, count: int) -> list:
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()


def make_objects(rng: np.random.Generator) -> list[dict]:
    """Two shards of four views each; views keep zero to two captions, each caption names its object and view."""
    rows = triplet_rows(0, 24, POINTS, 4, rng) + triplet_rows(1, 20, POINTS, 4, rng)
    for index, row in enumerate(rows):
        row["kept"] = [
            [f"{row['uid']} view {v} caption {c}" for c in range((index + v) % 3)] for v in range(len(row["views"]))
        ]
        row["xyz"] = np.asarray(row["xyz"], np.float32)
        row["xyz"][0] = [index, 0, 0]  # the first point identifies the object (see LookupEncoder)
        row["xyz"] = row["xyz"].tolist()
    return rows


def embedding_row(row: dict, rng: np.random.Generator) -> dict:
    captions = [c for kept in row["kept"] for c in kept]
    return {
        "uid": row["uid"],
        "views": row["views"],
        "image_embeddings": unit(rng, len(row["views"])),
        "caption_views": [v for v, kept in zip(row["views"], row["kept"]) for _ in kept],
        "captions": captions,
        "caption_embeddings": unit(rng, len(captions)),
    }


def write(rows, schema, path, row_group_size=5):
    write_parquet(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Triplet shards, and embedding shards joined only by uid: rows shuffled, split differently, one
    held-out object's row missing, one held-out object with no kept caption, one with a stale row."""
    root = tmp_path_factory.mktemp("retrieval")
    rng = np.random.default_rng(1)
    rows = make_objects(rng)
    held = [r for r in rows if holdout(r["uid"], FRACTION)]
    assert 8 <= len(held) <= len(rows) - 8
    missing, captionless, stale = held[0]["uid"], held[1]["uid"], held[2]["uid"]
    held[1]["kept"] = [[] for _ in held[1]["views"]]
    embeddings = {r["uid"]: embedding_row(r, rng) for r in rows}
    embeddings[stale]["image_embeddings"] = embeddings[stale]["image_embeddings"][:-1]  # built from fewer views
    triplets = [
        write(rows[:24], triplet_schema(POINTS), root / "t0.parquet"),
        write(rows[24:], triplet_schema(POINTS), root / "t1.parquet"),
    ]
    shuffled = [embeddings[r["uid"]] for r in rows if r["uid"] != missing]
    rng.shuffle(shuffled)
    embeds = [
        write(shuffled[:10], EMBED_SCHEMA, root / "e0.parquet", 3),
        write(shuffled[10:], EMBED_SCHEMA, root / "e1.parquet", 7),
    ]
    return {
        "triplets": triplets,
        "embeds": embeds,
        "rows": {r["uid"]: r for r in rows},
        "embeddings": embeddings,
        "missing": missing,
        "captionless": captionless,
        "stale": stale,
    }


def test_pairs_join_embeddings_by_uid_and_count_what_they_skip(dataset):
    pairs = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, num_points=32)
    assert pairs.skipped == {NO_EMBEDDING: 1, NO_CAPTION: 1, MISMATCH: 1}
    assert {dataset["missing"], dataset["captionless"], dataset["stale"]}.isdisjoint(pairs.uids)
    assert pairs.text.shape == pairs.image.shape == (len(pairs), DIM)
    for i, uid in enumerate(pairs.uids):
        row, embedding, view = dataset["rows"][uid], dataset["embeddings"][uid], pairs.views[i]
        caption = row["kept"][view][0]  # the view's first kept caption, found by its text, not its position
        np.testing.assert_array_equal(
            pairs.text[i].numpy(), np.float32(embedding["caption_embeddings"][embedding["captions"].index(caption)])
        )
        np.testing.assert_array_equal(pairs.image[i].numpy(), np.float32(embedding["image_embeddings"][view]))
        xyz, rgb = pairs.clouds[i]
        np.testing.assert_array_equal(xyz, np.float32(row["xyz"][:32]))
        np.testing.assert_allclose(rgb, np.asarray(row["rgb"][:32], np.float32) / 255)
        assert xyz.dtype == rgb.dtype == np.float32


def test_only_held_out_objects_are_paired(dataset):
    pairs = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, num_points=POINTS)
    skipped = {dataset["missing"], dataset["captionless"], dataset["stale"]}
    held = {uid for uid in dataset["rows"] if holdout(uid, FRACTION)}
    assert set(pairs.uids) == held - skipped
    assert len(pairs.uids) == len(set(pairs.uids))
    assert heldout_pairs(dataset["triplets"], dataset["embeds"], 0.0, POINTS).uids == []


def test_the_view_is_fixed_by_the_seed_and_the_uid(dataset):
    first = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, POINTS, seed=0)
    again = heldout_pairs(dataset["triplets"], list(reversed(dataset["embeds"])), FRACTION, POINTS, seed=0)
    other = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, POINTS, seed=1)
    assert first.views == again.views
    assert torch.equal(first.text, again.text)
    assert first.views != other.views
    assert len(set(first.views)) > 1  # not always the first view
    assert all(dataset["rows"][u]["kept"][v] for u, v in zip(first.uids, first.views))  # a view with a caption


# --- end to end, with encoders standing in for the Point-BERT ---


class MeanEncoder(torch.nn.Module):
    """Mean xyz and rgb to D dims; records the mode it ran in."""

    def __init__(self):
        super().__init__()
        self.project = torch.nn.Linear(6, DIM)
        self.seen = []

    def forward(self, xyz, rgb):
        self.seen.append((self.training, torch.is_inference_mode_enabled(), xyz.shape, float(rgb.max())))
        return self.project(torch.cat([xyz.mean(dim=1), rgb.mean(dim=1)], dim=-1))


class LookupEncoder(torch.nn.Module):
    """Returns each object's own target, found by its first point: a perfect encoder of one modality."""

    def __init__(self, rows, features):
        super().__init__()
        self.features = {int(r["xyz"][0][0]): f for r, f in zip(rows, features)}

    def forward(self, xyz, rgb):
        return torch.stack([self.features[int(round(x))] for x in xyz[:, 0, 0].tolist()])


def test_retrieval_ranks_every_held_out_object_with_the_encoder_in_eval_mode(dataset):
    torch.manual_seed(0)
    encoder = MeanEncoder().train()
    result = heldout_retrieval(encoder, dataset["triplets"], dataset["embeds"], FRACTION, 32, "cpu", batch_size=3)
    objects = len(heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, 32).uids)
    assert set(result) == {"text", "image", "objects", "skipped", "skipped_reasons"}
    assert result["objects"] == objects
    assert result["skipped"] == 3
    for side in ("text", "image"):
        assert set(result[side]) == {"r1", "r5", "r10", "median_rank", "mean_rank", "samples", "chance_r1"}
        assert result[side]["samples"] == objects
        assert 1 <= result[side]["median_rank"] <= objects
    assert encoder.training  # restored
    assert {(training, inference) for training, inference, _, _ in encoder.seen} == {(False, True)}
    assert [shape[0] for _, _, shape, _ in encoder.seen] == [3] * (objects // 3) + [objects % 3] * (objects % 3 > 0)
    assert all(shape[1:] == (32, 3) and top <= 1 for _, _, shape, top in encoder.seen)


def test_an_encoder_that_returns_the_targets_retrieves_every_object(dataset):
    pairs = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, POINTS)
    rows = [dataset["rows"][u] for u in pairs.uids]
    for side, features in (("text", pairs.text), ("image", pairs.image)):
        encoder = LookupEncoder(rows, features)
        result = heldout_retrieval(encoder, dataset["triplets"], dataset["embeds"], FRACTION, POINTS, "cpu", 4)
        assert result[side]["r1"] == 100.0
        assert result[side]["median_rank"] == 1.0
        other = "image" if side == "text" else "text"
        assert result[other]["r1"] < 50  # the other modality's targets are unrelated random vectors


def test_fewer_than_two_objects_is_an_error_not_a_score(dataset, tmp_path):
    result = heldout_retrieval(MeanEncoder(), dataset["triplets"], dataset["embeds"], 0.0, POINTS, "cpu")
    assert result == {"error": "fewer than 2 held-out objects", "objects": 0, "skipped": 0, "skipped_reasons": {}}
    empty = write([], EMBED_SCHEMA, tmp_path / "empty.parquet")
    result = heldout_retrieval(MeanEncoder(), dataset["triplets"], [empty], FRACTION, POINTS, "cpu")
    assert result["error"] == "fewer than 2 held-out objects"
    assert result["skipped_reasons"][NO_EMBEDDING] == result["skipped"] > 2
    assert pq.read_metadata(empty).num_rows == 0
    one = heldout_pairs(dataset["triplets"], dataset["embeds"], FRACTION, POINTS).uids[0]
    single = write([dataset["embeddings"][one]], EMBED_SCHEMA, tmp_path / "single.parquet")
    result = heldout_retrieval(MeanEncoder(), dataset["triplets"], [single], FRACTION, POINTS, "cpu")
    assert result["error"] == "fewer than 2 held-out objects"
    assert result["objects"] == 1
