"""BLIP-2 Flan-T5 (Cap3D's captioner): the encoder-decoder caption loop encodes each image once, greedily gives
exactly transformers' own tokens, and its stand-in keeps the real checkpoint's contract, through the caption
stage and Snakemake."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import snakemake, write_config
from PIL import Image
from stand_ins import caption_cfg, png, stand_ins, t5_stand_in, write_render_shard  # noqa: F401 - fixture

from ulip2_pipeline.models.blip2 import GenerationSettings, decode_captions, end_tokens, pad_token
from ulip2_pipeline.models.blip2_t5 import (
    caption_batch,
    decoder_start_token,
    encoder_prompt_ids,
    sample_caption_tokens,
)
from ulip2_pipeline.models.captioners import load_captioner
from ulip2_pipeline.models.real_models import (
    BLIP2_PREPROCESSOR_CONFIG,
    BLIP2_T5_CONFIG,
    SIZE_KEYS,
    blip2_t5_config,
)
from ulip2_pipeline.stages import caption as caption_stage

CPU = torch.device("cpu")
EOS, PAD, START, IMAGE = 1, 0, 0, 32100
STEPS = 10  # the stand-in's greedy captions of views() end at steps 8, 7, 8 and after 10: ends and padding both show


def views(count=4):
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        pixels = np.full((96, 96, 3), 255, np.uint8)
        x, y = rng.integers(5, 50, 2)
        pixels[y : y + 40, x : x + 40] = rng.integers(0, 255, 3)
        images.append(Image.fromarray(pixels))
    return images


@pytest.fixture(scope="module")
def t5(t5_stand_in):
    captioner = load_captioner(t5_stand_in, CPU)
    return captioner.model, captioner.processor


def tokens(model, processor, images, settings, seeds=None, prompt=""):
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    return sample_caption_tokens(
        model,
        pixels,
        encoder_prompt_ids(processor, prompt, CPU),
        seeds if seeds is not None else list(range(len(images))),
        settings,
        end_tokens(model),
        pad_token(model, processor.tokenizer),
    )


def greedy(steps=STEPS, **overrides):
    return GenerationSettings(**{"num_captions": 1, "max_new_tokens": steps, "do_sample": False, **overrides})


@pytest.mark.parametrize("prompt", ["", "a photo of"])
def test_greedy_captions_are_exactly_transformers_generate_eos_included(t5, prompt):
    """generate's own input layout: the processor's ids for the prompt ("" gives the <image>s and </s>; with no
    text at all transformers 5.23's generate asks the T5 config for a bos_token_id it has not)."""
    model, processor = t5
    images = views()
    ours = tokens(model, processor, images, greedy(), prompt=prompt)
    ends = [row.tolist().index(EOS) if EOS in row else None for row in ours]
    assert any(e is not None and e > 0 for e in ends), ends  # a caption ends at </s> after step 0 ...
    assert any(e is None for e in ends), ends  # ... while another runs on: padding is checked too
    inputs = processor(images=images, text=[prompt] * len(images), return_tensors="pt")
    assert inputs["input_ids"][0, :32].tolist() == [IMAGE] * 32
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=STEPS)
    assert generated[:, 0].tolist() == [START] * len(images)  # an encoder-decoder's output starts with it
    theirs = torch.nn.functional.pad(generated[:, 1:], (0, STEPS + 1 - generated.shape[1]), value=PAD)
    assert torch.equal(ours, theirs)


def test_the_prompt_reaches_the_encoder(t5):
    model, processor = t5
    images = views()
    plain = decode_captions(processor.tokenizer, tokens(model, processor, images, greedy()), [EOS])
    prompted = decode_captions(
        processor.tokenizer, tokens(model, processor, images, greedy(), prompt="a photo of"), [EOS]
    )
    assert plain != prompted


def test_the_encoders_prompt_is_the_tokenizers_own_layout_without_bos(t5):
    _, processor = t5
    assert encoder_prompt_ids(processor, "", CPU).tolist() == [EOS]
    ids = encoder_prompt_ids(processor, "a photo of", CPU).tolist()
    assert ids[-1] == EOS
    assert EOS not in ids[:-1]
    assert PAD not in ids
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == "a photo of"
    with_images = processor(images=views(1), text="a photo of", return_tensors="pt")["input_ids"][0].tolist()
    assert with_images == [IMAGE] * 32 + ids


def test_image_features_the_encoder_and_cross_attention_run_once_per_image(t5):
    model, processor = t5
    rows = {"vision": [], "encoder": [], "cross": []}
    hooks = [
        model.vision_model.register_forward_hook(lambda m, a, out: rows["vision"].append(out[0].shape[0])),
        model.language_model.encoder.register_forward_hook(lambda m, a, out: rows["encoder"].append(out[0].shape[0])),
        model.language_model.decoder.block[0]
        .layer[1]
        .EncDecAttention.k.register_forward_hook(lambda m, a, out: rows["cross"].append(out.shape[0])),
    ]
    try:
        captions = caption_batch(model, processor, views(3), [1, 2, 3], GenerationSettings(max_new_tokens=8))
    finally:
        for hook in hooks:
            hook.remove()
    assert [len(c) for c in captions] == [10, 10, 10]
    assert sum(rows["vision"]) == 3  # not 30
    assert rows["encoder"] == [3]  # the 10 samples share one encoding of the image prefix ...
    assert rows["cross"] == [3]  # ... and one projection of it into the decoder's cross-attention cache


def noise(count=3):
    """Images far apart enough that the random model's first token already depends on which it sees."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(count)]


def test_sampled_captions_are_seeded_per_image_and_independent_of_batching(t5):
    model, processor = t5
    images = noise(3)
    settings = GenerationSettings(num_captions=3, max_new_tokens=8)
    together = caption_batch(model, processor, images, [11, 12, 13], settings)
    alone = caption_batch(model, processor, images[1:2], [12], settings)
    again = caption_batch(model, processor, images, [11, 12, 13], settings)
    other = caption_batch(model, processor, images, [14, 15, 16], settings)
    assert together == again
    assert together[1] == alone[0]
    assert together != other
    assert all(len(set(group)) > 1 for group in together)  # the n samples of a view differ


def test_greedy_gives_the_one_most_likely_caption_n_times(t5):
    model, processor = t5
    captions = caption_batch(model, processor, views(2), [0, 1], greedy())
    rows = []
    hook = model.language_model.decoder.register_forward_hook(lambda m, a, out: rows.append(out[0].shape[0]))
    try:
        repeated = caption_batch(model, processor, views(2), [7, 8], greedy(num_captions=3))
    finally:
        hook.remove()
    assert repeated == [group * 3 for group in captions]
    assert set(rows) == {2}  # decoded once per image, not once per caption


def test_the_stand_in_ends_its_sampled_captions_at_eos_after_about_ten_tokens(t5):
    """As a trained captioner does; a random T5 never ends a caption and would run to max_new_tokens."""
    model, processor = t5
    sampled = tokens(model, processor, views(), GenerationSettings(max_new_tokens=30), seeds=[0, 1, 2, 3])
    lengths = [row.index(EOS) for row in sampled.tolist()]  # raises if a caption did not end
    assert 5 <= min(lengths)
    assert max(lengths) <= 20
    assert all(set(row[end + 1 :]) <= {PAD} for row, end in zip(sampled.tolist(), lengths))
    captions = caption_batch(model, processor, views(), [0, 1, 2, 3], GenerationSettings(max_new_tokens=30))
    assert all(c and "</s>" not in c for group in captions for c in group)


def test_min_new_tokens_holds_back_the_end_of_every_caption(t5):
    model, processor = t5
    free = tokens(model, processor, views(), greedy())
    held = tokens(model, processor, views(), greedy(min_new_tokens=STEPS))
    assert EOS in free
    assert EOS not in held
    for short, full in zip(free.tolist(), held.tolist()):
        end = short.index(EOS) if EOS in short else STEPS
        assert full[:end] == short[:end]


def configured(generation: dict, text: dict) -> SimpleNamespace:
    return SimpleNamespace(
        generation_config=SimpleNamespace(**generation), config=SimpleNamespace(text_config=SimpleNamespace(**text))
    )


@pytest.mark.parametrize(
    "generation, text, expected",
    [({"decoder_start_token_id": 5}, {"decoder_start_token_id": 0}, 5), ({}, {"decoder_start_token_id": 7}, 7)],
)
def test_decoding_starts_at_the_generation_configs_start_token_else_the_text_configs(generation, text, expected):
    assert decoder_start_token(configured(generation, text)) == expected


def test_a_model_that_names_no_decoder_start_token_is_refused():
    with pytest.raises(ValueError, match=r"names no decoder start token"):
        decoder_start_token(configured({"decoder_start_token_id": None}, {}))


# --- the stand-in keeps Salesforce/blip2-flan-t5-xl's contract ---


def test_the_stand_ins_config_keeps_the_real_token_ids_and_layout(t5_stand_in, t5):
    saved = json.loads((Path(t5_stand_in) / "config.json").read_text())
    assert saved["model_type"] == "blip-2"
    assert saved["use_decoder_only_language_model"] is False
    assert (saved["num_query_tokens"], saved["image_token_index"]) == (32, IMAGE)
    text = saved["text_config"]
    assert text["model_type"] == "t5"
    assert "bos_token_id" not in text or text["bos_token_id"] is None
    assert (text["eos_token_id"], text["pad_token_id"], text["decoder_start_token_id"]) == (EOS, PAD, START)
    assert text["vocab_size"] == 32128
    assert text["feed_forward_proj"] == "gated-gelu"
    assert text["tie_word_embeddings"] is False
    assert (text["relative_attention_num_buckets"], text["relative_attention_max_distance"]) == (32, 128)
    assert text["layer_norm_epsilon"] == 1e-6
    sizes = set().union(*SIZE_KEYS.values()) | {"torch_dtype", "architectures", "_name_or_path"}
    for block in ("vision_config", "qformer_config", "text_config"):
        for key, value in BLIP2_T5_CONFIG[block].items():
            if key not in sizes:
                assert saved[block][key] == value, (block, key)
    model, _ = t5
    language_model = model.language_model
    assert model.config.is_encoder_decoder
    assert not model.config.use_decoder_only_language_model
    assert language_model.lm_head.weight is not language_model.shared.weight  # Flan-T5's own output embedding
    assert model.config.text_config.scale_decoder_outputs is False  # ... and no rescaling before it
    assert language_model.lm_head.weight.shape[0] == 32128
    assert model.vision_model.embeddings.position_embedding.shape[1] == 257  # 224 px, patch 14
    assert model.query_tokens.shape[1] == 32
    with pytest.raises(ValueError, match="only change sizes"):
        blip2_t5_config({"text_config": {"eos_token_id": 2}})


def test_the_stand_ins_generation_config_starts_at_the_pad_token_and_ends_at_eos(t5_stand_in, t5):
    saved = json.loads((Path(t5_stand_in) / "generation_config.json").read_text())
    assert (saved["decoder_start_token_id"], saved["eos_token_id"], saved["pad_token_id"]) == (START, EOS, PAD)
    assert "bos_token_id" not in saved
    model, processor = t5
    assert end_tokens(model) == [EOS]
    assert decoder_start_token(model) == START
    assert pad_token(model, processor.tokenizer) == PAD


def test_the_stand_ins_tokenizer_has_t5s_layout(t5):
    _, processor = t5
    tokenizer = processor.tokenizer
    assert type(tokenizer).__name__ == "T5Tokenizer"  # transformers 5's T5TokenizerFast
    assert len(tokenizer) == 32101
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token) == (
        "<pad>",
        "</s>",
        "<unk>",
        None,
    )
    assert tokenizer.convert_tokens_to_ids(["<pad>", "</s>", "<unk>", "\u2581"]) == [0, 1, 2, 3]
    assert tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>", "<extra_id_99>"]) == [32099, 32098, 32000]
    assert tokenizer.convert_tokens_to_ids("<image>") == IMAGE
    ids = tokenizer("a red mug")["input_ids"]
    assert ids[-1] == EOS
    assert EOS not in ids[:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red mug"
    assert tokenizer.decode([*ids[:-1], 32099, IMAGE, PAD], skip_special_tokens=True) == "a red mug"
    assert tokenizer.model_max_length == 512


def test_the_stand_ins_tokenizer_json_is_laid_out_as_t5s(t5_stand_in):
    """The file itself, as the hub's tokenizer.json (transformers 5 rebuilds a T5 tokenizer from its pieces)."""
    saved = json.loads((Path(t5_stand_in) / "tokenizer.json").read_text())
    model = saved["model"]
    assert (model["type"], model["unk_id"], len(model["vocab"])) == ("Unigram", 2, 32100)
    assert [piece for piece, _ in model["vocab"][:4]] == ["<pad>", "</s>", "<unk>", "\u2581"]
    assert [piece for piece, _ in model["vocab"][32000:32100:99]] == ["<extra_id_99>", "<extra_id_0>"]
    assert [p["type"] for p in saved["pre_tokenizer"]["pretokenizers"]] == ["WhitespaceSplit", "Metaspace"]
    assert saved["decoder"]["type"] == "Metaspace"
    single = saved["post_processor"]["single"]
    assert [next(iter(part.values()))["id"] for part in single] == ["A", "</s>"]  # </s> appended, no BOS
    assert {t["content"]: t["id"] for t in saved["added_tokens"] if t["content"] == "<image>"} == {"<image>": IMAGE}


def test_the_stand_ins_processor_is_the_hubs(t5_stand_in, t5):
    _, processor = t5
    folder = Path(t5_stand_in)
    assert json.loads((folder / "processor_config.json").read_text()) == {
        "num_query_tokens": 32,
        "processor_class": "Blip2Processor",
    }
    assert json.loads((folder / "preprocessor_config.json").read_text()) == json.loads(
        json.dumps(BLIP2_PREPROCESSOR_CONFIG)
    )
    assert processor.num_query_tokens == 32
    assert (processor.image_processor.size["height"], processor.image_processor.size["width"]) == (224, 224)
    assert set(processor(images=views(1), return_tensors="pt")) == {"pixel_values"}
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        assert (folder / name).is_file(), name


def test_the_real_size_config_builds_blip2_flan_t5_xl():
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(Blip2Config.from_dict(blip2_t5_config()))
    language_model = model.language_model
    lm_head = language_model.lm_head.weight.numel()  # built tied by transformers 5.23, its own in the checkpoint
    billions = (sum(p.numel() for p in model.parameters()) + lm_head) / 1e9
    assert 3.8 < billions < 4.0  # ViT-g/14 ~1.0 B + Q-Former ~0.1 B + Flan-T5-XL ~2.85 B
    assert (len(language_model.encoder.block), len(language_model.decoder.block)) == (24, 24)
    assert language_model.config.d_model == 2048


# --- through the caption stage and Snakemake ---


@pytest.fixture
def render_shard(tmp_path):
    rows = [("a", 0, png((255, 0, 0))), ("a", 1, png((0, 90, 255))), ("b", 0, png((20, 200, 20)))]
    return write_render_shard(tmp_path / "render.parquet", rows)


def metadata(path) -> dict:
    return {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}


@pytest.mark.parametrize("which, family, eos", [("t5", "blip2-t5", [EOS]), ("opt", "blip2-opt", [50118])])
def test_the_caption_stage_runs_the_family_the_config_names_and_records_it(
    tmp_path, stand_ins, t5_stand_in, render_shard, caplog, which, family, eos
):
    model_dir = t5_stand_in if which == "t5" else stand_ins["blip2"]
    cfg = caption_cfg(stand_ins, model=model_dir, num_captions=3, max_new_tokens=12)
    with caplog.at_level(logging.INFO, logger="ulip2_pipeline.stages.caption"):
        summary = caption_stage.run_shard(
            caption_stage.Inputs(render_shard, "00000"),
            cfg,
            caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
        )
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["uid"], r["view"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0)]
    assert summary["views"] == 3
    assert all(len(r["captions"]) == 3 and r["model"] == model_dir for r in rows)
    assert pq.read_table(tmp_path / "cf.parquet").num_rows == 0
    meta = metadata(tmp_path / "c.parquet")
    assert meta["ulip2.caption_family"] == family
    assert json.loads(meta["ulip2.generation"])["eos_token_id"] == eos
    assert json.loads(meta["ulip2.generation"])["prompt_used"] == ""  # BLIP-2 continues the prompt as given
    assert f"loaded {model_dir} ({family}) on cpu" in caplog.text
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    direct = load_captioner(model_dir, CPU).caption([red], [rows[0]["seed"]], caption_stage.generation_settings(cfg))
    assert rows[0]["captions"] == [" ".join(c.split()) for c in direct[0]]


def test_an_empty_render_shard_records_no_caption_family(tmp_path, stand_ins):
    render = write_render_shard(tmp_path / "render.parquet", [])
    caption_stage.run_shard(
        caption_stage.Inputs(render, "00003"),
        caption_cfg(stand_ins),
        caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
    )
    assert metadata(tmp_path / "c.parquet")["ulip2.caption_family"] == "none"


@pytest.mark.e2e
def test_snakemake_captions_a_shard_with_the_flan_t5_stand_in(tmp_path, t5_stand_in):
    config = write_config(tmp_path, objects_per_class=1, broken_objects=0)
    config["caption"].update(model=t5_stand_in, num_captions=2, max_new_tokens=12)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/demo/captions/00000.parquet")
    captions = tmp_path / "results" / "demo" / "captions" / "00000.parquet"
    rows = pq.read_table(captions).to_pylist()
    rendered = pq.read_table(tmp_path / "results" / "demo" / "render" / "00000.parquet").num_rows
    assert len(rows) == rendered > 0
    assert all(len(r["captions"]) == 2 and r["model"] == t5_stand_in for r in rows)
    meta = metadata(captions)
    assert (meta["ulip2.caption_family"], meta["ulip2.model"]) == ("blip2-t5", t5_stand_in)
    assert "(blip2-t5) on cpu" in (tmp_path / "logs" / "demo" / "caption" / "00000.log").read_text()
    assert not (tmp_path / "results" / "models").exists()  # a model outside results/models needs no build rule
