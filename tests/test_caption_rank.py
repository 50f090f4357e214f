"""Caption and rank stages with the tiny offline models, loaded through the real loading code."""

import io
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from stand_ins import caption_cfg, png, rank_cfg, stand_ins, write_render_shard  # noqa: F401 - fixture

from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.models.blip2 import GenerationSettings, caption_batch, load_captioner
from ulip2_pipeline.models.clip import load_clip, top_k
from ulip2_pipeline.stages import caption as caption_stage
from ulip2_pipeline.stages import rank as rank_stage

CPU = torch.device("cpu")


@pytest.fixture
def models(stand_ins):
    return {"blip2": stand_ins["blip2"], **stand_ins["rank"]}


@pytest.fixture
def render_shard(tmp_path):
    """Two objects: 'a' with 3 views, 'b' with 2 (one corrupt). A failed object simply has no views."""
    rows = [
        ("a", 0, png((255, 0, 0))),
        ("a", 1, png((0, 255, 0))),
        ("a", 2, png((0, 0, 255))),
        ("b", 0, png((200, 200, 0))),
        ("b", 1, png((9, 9, 9))[:40]),
    ]
    return write_render_shard(tmp_path / "render.parquet", rows)


def test_ten_captions_per_view_and_a_corrupt_png_is_a_failure_row(tmp_path, models, stand_ins, render_shard):
    summary = caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        caption_cfg(stand_ins),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["uid"], r["view"]) for r in rows] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert all(len(r["captions"]) == 10 for r in rows)
    assert all(r["empty_captions"] == sum(not c for c in r["captions"]) for r in rows)
    assert all(c == c.strip() for r in rows for c in r["captions"])
    failures = pq.read_table(tmp_path / "cf.parquet").to_pylist()
    assert [(f["uid"], f["reason"]) for f in failures] == [("b", "corrupt_png")]
    assert summary["views"] == 4
    metadata = pq.read_schema(tmp_path / "c.parquet").metadata
    assert metadata[b"ulip2.model"].decode() == models["blip2"]
    assert b"top_p" in metadata[b"ulip2.generation"]


def test_image_features_and_the_prefix_are_computed_once_per_image(models):
    model, processor = load_captioner(models["blip2"], CPU)
    vision_rows, prefill_rows = [], []
    model.vision_model.register_forward_hook(lambda m, args, out: vision_rows.append(out[0].shape[0]))

    def count_prefill(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            prefill_rows.append(kwargs["inputs_embeds"].shape[0])

    model.language_model.register_forward_pre_hook(count_prefill, with_kwargs=True)
    images = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    captions = caption_batch(model, processor, images, [1, 2, 3], GenerationSettings(max_new_tokens=8))
    assert [len(c) for c in captions] == [10, 10, 10]
    assert sum(vision_rows) == 3  # not 30: the vision encoder sees each image once
    assert sum(prefill_rows) == 3  # the 10 samples share one prefill of the image prefix


def test_captions_are_seeded_and_independent_of_batching(models):
    model, processor = load_captioner(models["blip2"], CPU)
    images = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0))]
    settings = GenerationSettings(max_new_tokens=10)
    together = caption_batch(model, processor, images, [11, 12], settings)
    alone = caption_batch(model, processor, images[1:], [12], settings)
    again = caption_batch(model, processor, images, [11, 12], settings)
    other = caption_batch(model, processor, images, [13, 14], settings)
    assert together == again
    assert together[1] == alone[0]
    assert together != other


def test_scores_are_cosine_similarities_and_top_k_is_the_arg_max(tmp_path, models, stand_ins, render_shard):
    import open_clip

    caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        caption_cfg(stand_ins),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    rank_stage.run_shard(
        rank_stage.Inputs(render_shard, tmp_path / "c.parquet", "00000"),
        rank_cfg(stand_ins),
        rank_stage.Outputs(tmp_path / "r.parquet", tmp_path / "rf.parquet"),
    )
    ranked = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert len(ranked) == 4
    # Recompute independently, with open_clip's own API.
    open_clip.add_model_config(models["arch_config"])
    model, _, preprocess = open_clip.create_model_and_transforms(models["arch"], pretrained=models["pretrained"])
    tokenizer = open_clip.get_tokenizer(models["arch"])
    render = {(r["uid"], r["view"]): r["png"] for r in pq.read_table(render_shard).to_pylist()}
    for row in ranked:
        image = preprocess(Image.open(io.BytesIO(render[(row["uid"], row["view"])])).convert("RGB"))
        with torch.no_grad():
            img = model.encode_image(image[None])
            txt = model.encode_text(tokenizer(row["captions"]))
        expected = torch.cosine_similarity(img, txt).numpy()
        np.testing.assert_allclose(row["scores"], expected, atol=1e-5)
        nonempty = [i for i, c in enumerate(row["captions"]) if c]
        best = max(nonempty, key=lambda i: (row["scores"][i], -i))
        assert row["top_k"] == [best]
        assert row["kept"] == [row["captions"][best]]
        assert row["model"] == f"{models['arch']}/{models['pretrained']}"


def test_top_k_breaks_ties_by_caption_order_and_skips_empty_captions():
    scores = np.array([0.5, 0.9, 0.9, 0.95, 0.1], dtype=np.float32)
    assert top_k(scores, ["a", "b", "c", "", "e"], 2) == [1, 2]
    assert top_k(scores, ["", "", "", "", ""], 1) == []


def test_tiny_models_load_through_the_real_loaders(models):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model, processor = load_captioner(models["blip2"], CPU)
    assert isinstance(model, Blip2ForConditionalGeneration)
    assert isinstance(processor, Blip2Processor)
    assert model.dtype == torch.float32
    clip = load_clip(models["arch"], models["pretrained"], models["arch_config"], CPU)
    assert type(clip.model).__name__ == "CLIP"


def test_out_of_memory_halves_the_batch_and_goes_on(caplog):
    seen = []

    def work(batch):
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    with caplog.at_level(logging.WARNING):
        assert run_in_batches(list(range(7)), work, batch_size=8) == [x * 10 for x in range(7)]
    assert seen[:3] == [7, 4, 2]
    assert "out of memory" in caplog.text


def test_other_errors_are_not_mistaken_for_out_of_memory():
    def work(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_in_batches([1, 2, 3], work, batch_size=2)
