"""One bad view never sinks its batch or its shard, and an empty shard flows through without a model."""

import pyarrow.parquet as pq
import pytest
import torch
from stand_ins import caption_cfg, embed_cfg, png, rank_cfg, stand_ins, triplet_shard, write_render_shard  # noqa: F401 - fixture

from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.models.captioners import Captioner
from ulip2_pipeline.stages import caption as caption_stage
from ulip2_pipeline.stages import embed as embed_stage
from ulip2_pipeline.stages import rank as rank_stage
from ulip2_pipeline.stages.views import view_seed

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


def oom(message="CUDA out of memory. Tried to allocate 2.00 GiB"):
    return torch.cuda.OutOfMemoryError(message)


def test_a_failing_batch_is_retried_item_by_item_and_only_the_bad_item_fails():
    seen = []

    def work(batch):
        seen.append(list(batch))
        if 3 in batch:
            raise ValueError("bad item")
        return [x * 10 for x in batch]

    results = run_in_batches(list(range(6)), work, 4, on_error=lambda item, exc: ("failed", item, str(exc)))
    assert results == [0, 10, 20, ("failed", 3, "bad item"), 40, 50]
    assert seen == [[0, 1, 2, 3], [0], [1], [2], [3], [4, 5]]


def test_out_of_memory_on_one_item_is_that_items_failure_not_the_runs():
    def work(batch):
        if 2 in batch:
            raise oom()
        return list(batch)

    results = run_in_batches(list(range(4)), work, 4, on_error=lambda item, exc: type(exc).__name__)
    assert results == [0, 1, "OutOfMemoryError", 3]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_in_batches(list(range(4)), work, 4)  # without on_error it still propagates


@pytest.fixture
def render_shard(tmp_path):
    rows = [("a", 0, png(RED)), ("a", 1, png(GREEN)), ("a", 2, png(BLUE)), ("b", 0, png(GREY))]
    return write_render_shard(tmp_path / "render.parquet", rows)


def test_caption_views_that_fail_alone_become_failure_rows_and_the_rest_are_unchanged(
    tmp_path, stand_ins, render_shard, monkeypatch
):
    cfg = caption_cfg(stand_ins, batch_size=4, max_new_tokens=5)
    caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        cfg,
        caption_stage.Outputs(tmp_path / "clean.parquet", tmp_path / "clean-f.parquet"),
    )
    broken = {view_seed(cfg.seed, "a", 1): ValueError("injected model error"), view_seed(cfg.seed, "b", 0): oom()}
    real_caption = Captioner.caption

    def failing_caption(captioner, images, seeds, settings):
        for seed in seeds:
            if seed in broken:
                raise broken[seed]
        return real_caption(captioner, images, seeds, settings)

    monkeypatch.setattr(Captioner, "caption", failing_caption)
    summary = caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        cfg,
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    clean = {(r["uid"], r["view"]): r["captions"] for r in pq.read_table(tmp_path / "clean.parquet").to_pylist()}
    assert [(r["uid"], r["view"]) for r in rows] == [("a", 0), ("a", 2)]
    assert all(r["captions"] == clean[(r["uid"], r["view"])] for r in rows)  # retried alone, same captions
    failures = pq.read_table(tmp_path / "cf.parquet").to_pylist()
    assert [(f["uid"], f["stage"], f["reason"]) for f in failures] == [
        ("a", "caption", "model_error"),
        ("b", "caption", "out_of_memory"),
    ]
    assert failures[0]["detail"] == "view 1: ValueError: injected model error"
    assert failures[1]["detail"].startswith("view 0: OutOfMemoryError: CUDA out of memory")
    assert failures[0]["source"] == str(render_shard)
    assert summary["views"] == 2
    assert summary["failed_views"] == 2


def test_rank_views_that_fail_alone_become_failure_rows(tmp_path, stand_ins, render_shard, monkeypatch):
    caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        caption_cfg(stand_ins, max_new_tokens=5),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    real_score_views = rank_stage.score_views

    def failing_score_views(clip, images, captions):
        if any(image.getpixel((0, 0)) == BLUE for image in images):
            raise RuntimeError("injected CLIP error")
        return real_score_views(clip, images, captions)

    monkeypatch.setattr(rank_stage, "score_views", failing_score_views)
    rank_stage.run_shard(
        rank_stage.Inputs(render_shard, tmp_path / "c.parquet", "00000"),
        rank_cfg(stand_ins, batch_size=4),
        rank_stage.Outputs(tmp_path / "r.parquet", tmp_path / "rf.parquet"),
    )
    ranked = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [(r["uid"], r["view"]) for r in ranked] == [("a", 0), ("a", 1), ("b", 0)]
    failures = pq.read_table(tmp_path / "rf.parquet").to_pylist()
    assert [(f["uid"], f["stage"], f["reason"], f["detail"]) for f in failures] == [
        ("a", "rank", "model_error", "view 2: RuntimeError: injected CLIP error")
    ]


def no_model(*args, **kwargs):
    raise AssertionError("a shard with nothing to process must not load a model")


def test_an_empty_render_shard_writes_empty_captions_and_ranks_without_a_model(tmp_path, stand_ins, monkeypatch):
    monkeypatch.setattr(caption_stage, "load_captioner", no_model)
    monkeypatch.setattr(rank_stage, "load_configured_clip", no_model)
    render = write_render_shard(tmp_path / "render.parquet", [])
    summary = caption_stage.run_shard(
        caption_stage.Inputs(render, "00007"),
        caption_cfg(stand_ins),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    assert summary["views"] == 0
    rank_stage.run_shard(
        rank_stage.Inputs(render, tmp_path / "c.parquet", "00007"),
        rank_cfg(stand_ins),
        rank_stage.Outputs(tmp_path / "r.parquet", tmp_path / "rf.parquet"),
    )
    for name, schema in (("c", caption_stage.CAPTIONS_SCHEMA), ("r", rank_stage.RANKED_SCHEMA)):
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.num_rows == 0
        assert table.schema.remove_metadata().equals(schema)
        assert table.schema.metadata[b"ulip2.device"] == b"none"
        assert pq.read_table(tmp_path / f"{name}f.parquet").num_rows == 0


def test_an_empty_triplet_shard_writes_empty_embeddings_without_a_model(tmp_path, stand_ins, monkeypatch):
    from ulip2_pipeline.stages import embed

    monkeypatch.setattr(embed, "load_configured_clip", no_model)
    shard = triplet_shard(tmp_path / "t.parquet", [])
    summary = embed_stage.run_shard(
        embed_stage.Inputs(shard, "00007"), embed_cfg(stand_ins), embed_stage.Outputs(tmp_path / "e.parquet")
    )
    table = pq.read_table(tmp_path / "e.parquet")
    assert summary["objects"] == 0
    assert table.num_rows == 0
    assert table.schema.remove_metadata().equals(embed.EMBED_SCHEMA)
    assert table.schema.metadata[b"ulip2.embedding_dim"] == b"0"
