"""The stand-ins keep the real checkpoints' contract: facts read back from the saved files through
the loading code the real models go through, pinned to the values of the public hub files
(Salesforce/blip2-opt-6.7b) and open_clip's registry, so they cannot drift back."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from stand_ins import stand_ins  # noqa: F401 - fixture

from ulip2_pipeline.models.blip2 import end_tokens, load_captioner
from ulip2_pipeline.models.clip import load_clip
from ulip2_pipeline.models.real_models import BLIP2_CONFIG, CLIP_EMBED, CLIP_RANK, blip2_config, clip_arch_config

CPU = torch.device("cpu")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def blip2(stand_ins):
    return load_captioner(stand_ins["blip2"], CPU)


def test_blip2_config_keeps_the_real_token_ids_and_layout(blip2):
    model, _ = blip2
    config = model.config
    assert config.num_query_tokens == 32
    assert config.image_token_index == 50265
    assert config.use_decoder_only_language_model
    text = config.text_config
    assert (text.eos_token_id, text.bos_token_id, text.pad_token_id) == (50118, 2, 1)
    assert text.vocab_size == 50304
    assert text.do_layer_norm_before
    assert text.activation_function == "relu"
    assert model.language_model.model.decoder.embed_positions.num_embeddings == 2048 + 2  # OPT's offset of 2
    assert model.language_model.lm_head.weight is model.language_model.get_input_embeddings().weight  # tied
    vision = config.vision_config
    assert (vision.image_size, vision.patch_size) == (224, 14)
    assert model.vision_model.embeddings.position_embedding.shape[1] == 257
    qformer = config.qformer_config
    assert qformer.cross_attention_frequency == 2
    assert [hasattr(layer, "crossattention") for layer in model.qformer.encoder.layer] == [
        i % 2 == 0 for i in range(qformer.num_hidden_layers)
    ]
    assert model.query_tokens.shape[1] == 32


def test_blip2_generation_config_ends_captions_at_the_newline(stand_ins, blip2):
    model, _ = blip2
    saved = json.loads((Path(stand_ins["blip2"]) / "generation_config.json").read_text())
    assert (saved["bos_token_id"], saved["eos_token_id"], saved["pad_token_id"]) == (2, 50118, 1)
    assert model.generation_config.eos_token_id == 50118
    assert end_tokens(model) == [50118]


def test_blip2_tokenizer_has_the_real_special_tokens_and_newline(blip2):
    _, processor = blip2
    tokenizer = processor.tokenizer
    assert type(tokenizer).__name__ == "GPT2Tokenizer"
    assert len(tokenizer) == 50266
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token) == (
        "</s>",
        "</s>",
        "</s>",
        "<pad>",
    )
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 2, 1)
    assert tokenizer.convert_tokens_to_ids("<image>") == 50265
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 50118]) == ["<s>", "<pad>", "</s>", "<unk>", "\u010a"]
    ids = tokenizer("a red mug\n")["input_ids"]
    assert ids[0] == 2
    assert ids[-1] == 50118
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red mug\n"


def test_blip2_processor_is_the_hubs(stand_ins, blip2):
    _, processor = blip2
    assert type(processor).__name__ == "Blip2Processor"
    assert processor.num_query_tokens == 32
    images = processor.image_processor
    assert type(images).__name__.startswith("BlipImageProcessor")
    assert (images.size["height"], images.size["width"]) == (224, 224)
    assert int(images.resample) == 3
    assert images.do_convert_rgb
    assert images.rescale_factor == pytest.approx(1 / 255)
    assert tuple(images.image_mean) == pytest.approx(CLIP_MEAN)
    assert tuple(images.image_std) == pytest.approx(CLIP_STD)
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    only_images = processor(images=[image], return_tensors="pt")
    assert set(only_images) == {"pixel_values"}
    assert only_images["pixel_values"].shape == (1, 3, 224, 224)
    with_text = processor(images=[image], text="a photo of", return_tensors="pt")["input_ids"][0].tolist()
    assert with_text[:33] == [50265] * 32 + [2]  # 32 <image> tokens before the BOS
    for name in (
        "preprocessor_config.json",
        "processor_config.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
    ):
        assert (Path(stand_ins["blip2"]) / name).is_file(), name  # the hub's file layout


def test_the_stand_in_only_shrinks_sizes(blip2):
    model, _ = blip2
    saved = model.config.to_dict()
    for block in ("vision_config", "qformer_config", "text_config"):
        for key, value in BLIP2_CONFIG[block].items():
            if key in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "ffn_dim",
                "encoder_hidden_size",
                "word_embed_proj_dim",
                "torch_dtype",
                "architectures",
                "_name_or_path",
            ):
                continue
            assert saved[block][key] == value, (block, key)
    with pytest.raises(ValueError, match="only change sizes"):
        blip2_config({"text_config": {"eos_token_id": 2}})


def test_the_real_size_config_builds_blip2_opt_6_7b():
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(Blip2Config.from_dict(blip2_config()))
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert 7.6 < billions < 7.9  # ViT-g/14 ~1.0 B + Q-Former ~0.1 B + OPT-6.7B ~6.65 B
    assert len(model.vision_model.encoder.layers) == 39
    assert len(model.language_model.model.decoder.layers) == 32


@pytest.mark.parametrize("which, activation", [("rank", "quick_gelu"), ("embed", "gelu")])
def test_tiny_clips_keep_their_real_activation_and_preprocessing(stand_ins, which, activation):
    spec = stand_ins[which]
    clip = load_clip(spec["arch"], spec["pretrained"], spec["arch_config"], CPU)
    assert clip.activation == activation
    steps = [type(t).__name__ for t in clip.preprocess.transforms]
    assert steps[:2] == ["Resize", "CenterCrop"]
    transforms = clip.preprocess.transforms
    resize, crop, normalize = transforms[0], transforms[1], transforms[-1]
    assert resize.size == 224
    assert resize.interpolation.value == "bicubic"
    assert list(crop.size) == [224, 224]
    assert tuple(normalize.mean) == pytest.approx(CLIP_MEAN)
    assert tuple(normalize.std) == pytest.approx(CLIP_STD)
    assert clip.model.visual.patch_size == (14, 14)
    assert clip.model.context_length == 77
    assert clip.model.vocab_size == 49408


@pytest.mark.parametrize("clip", [CLIP_RANK, CLIP_EMBED])
def test_tiny_clip_configs_are_open_clips_own_with_sizes_shrunk(clip):
    import open_clip

    real = open_clip.get_model_config(clip["arch"])
    tiny = clip_arch_config(
        clip,
        {"embed_dim": 32, "vision_cfg": {"width": 64, "layers": 2}, "text_cfg": {"width": 64, "heads": 2, "layers": 2}},
    )
    sizes = {"width", "layers", "heads", "head_width"}
    for tower in ("vision_cfg", "text_cfg"):
        assert {k: v for k, v in tiny[tower].items() if k not in sizes} == {
            k: v for k, v in real[tower].items() if k not in sizes
        }
    tag = open_clip.get_pretrained_cfg(clip["arch"], clip["pretrained"])
    assert tiny.get("quick_gelu", False) == tag.get("quick_gelu", False) == clip["quick_gelu"]
    with pytest.raises(ValueError, match="only change sizes"):
        clip_arch_config(clip, {"vision_cfg": {"patch_size": 32}})
