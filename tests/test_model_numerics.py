"""The GPU numeric path without a GPU: each stage end to end in its GPU precision on the CPU, the
precision recorded with the output, and CLIP run with the activation its weights were trained with."""

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from stand_ins import caption_cfg, embed_cfg, png, rank_cfg, stand_ins, triplet_shard, write_render_shard  # noqa: F401 - fixture

from ulip2_pipeline.models.blip2 import caption_dtype, load_captioner, vision_dtype
from ulip2_pipeline.models.clip import clip_precision, load_clip, needs_quick_gelu
from ulip2_pipeline.models.real_models import BLIP2_MODEL_ID, CLIP_EMBED, CLIP_RANK, CLIP_TINY_SIZES, clip_arch_config
from ulip2_pipeline.stages import caption as caption_stage
from ulip2_pipeline.stages import embed as embed_stage
from ulip2_pipeline.stages import rank as rank_stage

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


def metadata(path) -> dict:
    return {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}


@pytest.fixture
def render_shard(tmp_path):
    rows = [("a", 0, png((255, 0, 0))), ("a", 1, png((0, 90, 255))), ("b", 0, png((20, 200, 20)))]
    return write_render_shard(tmp_path / "render.parquet", rows)


def test_auto_precision_is_the_gpu_precision_on_a_gpu_and_fp32_on_the_cpu():
    assert caption_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert caption_dtype("auto", CPU) == torch.float32
    assert caption_dtype("float16", CPU) == torch.float16
    assert clip_precision("auto", torch.device("cuda")) == "fp16"
    assert clip_precision("auto", CPU) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        clip_precision("half", CPU)


@pytest.mark.parametrize("precision, dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_caption_shard_runs_in_half_precision_on_the_cpu(tmp_path, stand_ins, render_shard, precision, dtype):
    model, _ = load_captioner(stand_ins["blip2"], CPU, precision)
    assert vision_dtype(model) == dtype
    assert model.language_model.lm_head.weight.dtype == dtype
    cfg = caption_cfg(stand_ins, precision=precision, max_new_tokens=6, num_captions=3)
    summary = caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        cfg,
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert summary["views"] == 3
    assert all(len(r["captions"]) == 3 for r in rows)
    assert pq.read_table(tmp_path / "cf.parquet").num_rows == 0
    meta = metadata(tmp_path / "c.parquet")
    assert (meta["ulip2.device"], meta["ulip2.dtype"], meta["ulip2.precision"]) == ("cpu", str(dtype)[6:], precision)


def test_rank_shard_runs_in_fp16_on_the_cpu_and_scores_like_fp32(tmp_path, stand_ins, render_shard):
    caption_stage.run_shard(
        caption_stage.Inputs(render_shard, "00000"),
        caption_cfg(stand_ins, max_new_tokens=6),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    scores = {}
    for precision in ("fp16", "fp32"):
        out = tmp_path / f"r-{precision}.parquet"
        rank_stage.run_shard(
            rank_stage.Inputs(render_shard, tmp_path / "c.parquet", "00000"),
            rank_cfg(stand_ins, precision=precision),
            rank_stage.Outputs(out, tmp_path / "rf.parquet"),
        )
        assert pq.read_table(tmp_path / "rf.parquet").num_rows == 0
        scores[precision] = np.array([r["scores"] for r in pq.read_table(out).to_pylist()])
        meta = metadata(out)
        assert (meta["ulip2.device"], meta["ulip2.precision"], meta["ulip2.activation"]) == (
            "cpu",
            precision,
            "quick_gelu",
        )
        assert meta["ulip2.dtype"] == {"fp16": "float16", "fp32": "float32"}[precision]
    assert scores["fp16"].shape == (3, 10)
    np.testing.assert_allclose(scores["fp16"], scores["fp32"], atol=2e-2)


def test_embed_shard_runs_in_fp16_on_the_cpu(tmp_path, stand_ins):
    shard = triplet_shard(
        tmp_path / "t.parquet",
        [
            ("a", [png((255, 0, 0)), png((0, 0, 255))], [["a red box"], []]),
            ("b", [png((0, 200, 0))], [["a green ball"]]),
        ],
    )
    vectors = {}
    for precision in ("fp16", "fp32"):
        out = tmp_path / f"e-{precision}.parquet"
        summary = embed_stage.run_shard(
            embed_stage.Inputs(shard, "00000"), embed_cfg(stand_ins, precision=precision), embed_stage.Outputs(out)
        )
        assert summary["objects"] == 2
        assert summary["images"] == 3
        assert summary["captions"] == 2
        rows = pq.read_table(out).to_pylist()
        vectors[precision] = np.array([v for r in rows for v in r["image_embeddings"] + r["caption_embeddings"]])
        meta = metadata(out)
        assert (meta["ulip2.device"], meta["ulip2.precision"], meta["ulip2.activation"]) == ("cpu", precision, "gelu")
    assert vectors["fp16"].shape == (5, 32)
    cosine = (vectors["fp16"] * vectors["fp32"]).sum(-1)
    assert cosine.min() > 0.999


def test_a_half_precision_tower_takes_float32_pixels_from_any_caller(stand_ins):
    """The training loop's online towers call encode_image with float32 pixels, as open_clip's API invites."""
    import open_clip

    spec = stand_ins["embed"]
    clip = load_clip(spec["arch"], spec["pretrained"], spec["arch_config"], CPU, "fp16")
    assert clip.dtype == torch.float16
    assert clip.model.visual.conv1.weight.dtype == torch.float16
    pixels = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        features = clip.model.encode_image(pixels)
    assert features.shape == (2, 32)
    assert torch.isfinite(features.float()).all()
    bare = open_clip.create_model(spec["arch"], pretrained=spec["pretrained"], precision="fp16")
    with pytest.raises(RuntimeError, match="type"), torch.inference_mode():
        bare.encode_image(pixels)  # what every GPU rank and embed job hit before


@pytest.fixture
def quick_gelu_tag(tmp_path, monkeypatch):
    """A local pretrained entry in open_clip's own registry: weights trained with QuickGELU, on an
    architecture whose config says GELU (as ViT-L-14 with 'openai')."""
    import open_clip
    from open_clip import pretrained as registry

    arch = "ulip2-test-ViT-L-14"
    config = clip_arch_config({**CLIP_RANK, "quick_gelu": False}, CLIP_TINY_SIZES)
    (tmp_path / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    torch.manual_seed(1)
    trained = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    monkeypatch.setitem(
        registry._PRETRAINED,
        arch,
        {"trained_quickgelu": registry._pcfg(file=str(tmp_path / "weights.pt"), quick_gelu=True)},
    )
    return arch, trained


def test_weights_trained_with_quick_gelu_are_loaded_with_it(quick_gelu_tag, caplog):
    arch, trained = quick_gelu_tag
    assert needs_quick_gelu(arch, "trained_quickgelu")
    with caplog.at_level(logging.WARNING):
        clip = load_clip(arch, "trained_quickgelu", None, CPU)
    assert clip.activation == "quick_gelu"
    assert "trained with QuickGELU" in caplog.text
    pixels = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(clip.model.encode_image(pixels), trained.eval().encode_image(pixels), atol=1e-6)


def test_a_quick_gelu_architecture_with_gelu_weights_is_refused(tmp_path, monkeypatch):
    import open_clip
    from open_clip import pretrained as registry

    arch = "ulip2-test-ViT-L-14-quickgelu"
    (tmp_path / f"{arch}.json").write_text(json.dumps(clip_arch_config(CLIP_RANK, CLIP_TINY_SIZES)))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    monkeypatch.setitem(registry._PRETRAINED, arch, {"gelu_weights": registry._pcfg(file=str(tmp_path / "w.pt"))})
    with pytest.raises(ValueError, match="trained with GELU"):
        load_clip(arch, "gelu_weights", None, CPU)


def test_the_paper_models_preset_loads_each_checkpoint_with_its_training_activation():
    import open_clip

    preset = yaml.safe_load((REPO / "presets" / "real-models.yaml").read_text())
    assert preset["caption"]["model"] == BLIP2_MODEL_ID
    for section, real in (("rank", CLIP_RANK), ("embed", CLIP_EMBED)):
        arch, tag = preset[section]["arch"], preset[section]["pretrained"]
        assert tag == real["pretrained"]
        assert arch.removesuffix("-quickgelu") == real["arch"]
        assert not needs_quick_gelu(arch, tag)  # nothing to fix: the architecture already matches the weights
        assert open_clip.get_model_config(arch).get("quick_gelu", False) == real["quick_gelu"]
        assert preset[section].get("precision", "auto") == "auto"
    # and the bare architecture name is fixed, not silently run with GELU
    assert needs_quick_gelu("ViT-L-14", "openai")
    assert not needs_quick_gelu("ViT-bigG-14", "laion2b_s39b_b160k")
