"""Chat VLMs as captioners (``chat-vlm``: Qwen2.5-VL; Qwen2-VL and Qwen3-VL through the same code): the caption
loop prefills each image's chat prompt once, greedily gives exactly transformers' own tokens, and the Qwen2.5-VL
stand-in keeps Qwen/Qwen2.5-VL-7B-Instruct's contract, through the caption stage and Snakemake."""

import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import snakemake, write_config
from PIL import Image
from stand_ins import png, write_render_shard

from ulip2_pipeline.config import default_config
from ulip2_pipeline.models import blip2, chat_vlm, qwen_vocab, real_models, tiny_models
from ulip2_pipeline.models.blip2 import GenerationSettings, decode_captions, end_tokens, pad_token
from ulip2_pipeline.models.captioners import captioner_family, family_of, load_captioner
from ulip2_pipeline.models.chat_vlm import DEFAULT_INSTRUCTION, caption_batch, prefix_inputs, sample_caption_tokens
from ulip2_pipeline.models.real_models import (
    QWEN2_5_INSTRUCT_CHAT_TEMPLATE,
    QWEN2_5_VL_CHAT_TEMPLATE,
    QWEN2_5_VL_CONFIG,
    QWEN2_5_VL_GENERATION_CONFIG,
    QWEN2_5_VL_PREPROCESSOR_CONFIG,
    QWEN2_5_VL_SIZE_KEYS,
    QWEN2_5_VL_TINY_SIZES,
    QWEN2_ADDED_TOKENS,
    qwen2_5_vl_config,
)
from ulip2_pipeline.settings import CaptionSettings
from ulip2_pipeline.stages import caption as caption_stage

CPU = torch.device("cpu")
IM_END, ENDOFTEXT, IM_START = 151645, 151643, 151644
IMAGE_PAD, VISION_START, VISION_END = 151655, 151652, 151653
PAD = ENDOFTEXT
STEPS = 10  # the stand-in's greedy captions of solids() end at steps 9, 9, 8, 9 and after 10: ends and padding show
EXPECTED_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>Describe this 3D object in one short sentence.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def stand_in_key() -> str:
    """Changes with the code that builds the stand-in and the libraries that save it."""
    digest = hashlib.sha256()
    for module in (tiny_models, real_models, qwen_vocab, chat_vlm, blip2):
        digest.update(Path(module.__file__).read_bytes())
    for package in ("torch", "transformers", "tokenizers"):
        digest.update(version(package).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def qwen_stand_in() -> str:
    """The Qwen2.5-VL stand-in's folder, built once per machine and version of its code in the temporary folder
    (as ``stand_ins``); tests only read it."""
    root = Path(tempfile.gettempdir()) / f"ulip2-stand-in-qwen2_5_vl-{stand_in_key()}"
    built = root / "built.json"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            folder = tiny_models.build_tiny_qwen2_5_vl(root / "tiny-qwen2_5_vl")
            built.write_text(json.dumps(str(folder)))
    return json.loads(built.read_text())


@pytest.fixture(scope="module")
def qwen(qwen_stand_in):
    captioner = load_captioner(qwen_stand_in, CPU)
    return captioner.model, captioner.processor


def solids(size=64):
    colours = [(255, 0, 0), (0, 90, 255), (20, 200, 20), (0, 0, 0), (255, 255, 255), (128, 128, 128)]
    return [Image.new("RGB", (size, size), c) for c in colours]


def views(count=4, size=96):
    """Rendered-view-like images: a coloured square on white."""
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        pixels = np.full((size, size, 3), 255, np.uint8)
        x, y = rng.integers(5, size // 2, 2)
        pixels[y : y + size // 2, x : x + size // 2] = rng.integers(0, 255, 3)
        images.append(Image.fromarray(pixels))
    return images


def noise(count=3, size=64):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def tokens(model, processor, images, settings, seeds=None, instruction=DEFAULT_INSTRUCTION):
    return sample_caption_tokens(
        model,
        prefix_inputs(model, processor, images, instruction),
        seeds if seeds is not None else list(range(len(images))),
        settings,
        end_tokens(model),
        pad_token(model, processor.tokenizer),
    )


def greedy(steps=STEPS, **overrides):
    return GenerationSettings(**{"num_captions": 1, "max_new_tokens": steps, "do_sample": False, **overrides})


def generated(model, inputs, steps, with_logits=False):
    """``generate``'s new tokens, padded to ``steps`` (and its logits per step); without Qwen's default repetition
    penalty (1.05, from the hub's generation config), which the caption loop does not apply (the pipeline's
    settings decide sampling)."""
    out = model.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=steps,
        repetition_penalty=1.0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[:, inputs["input_ids"].shape[1] :]
    new = torch.nn.functional.pad(new, (0, steps - new.shape[1]), value=PAD)
    return (new, torch.stack(out.logits)) if with_logits else new


def greedy_with_logits(model, inputs, steps, eos=(IM_END, ENDOFTEXT)):
    """The caption loop's greedy tokens and the logits it picked them from, per step."""
    logits = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: logits.append(out[:, -1]))
    try:
        ours = sample_caption_tokens(
            model, inputs, list(range(len(inputs["input_ids"]))), greedy(steps), list(eos), PAD
        )
    finally:
        hook.remove()
    return ours, torch.stack(logits)


def assert_same_as_generate(model, inputs, steps):
    """Tokens equal, and the logits of every step the same as generate's (M-RoPE positions included)."""
    ours, our_logits = greedy_with_logits(model, inputs, steps)
    theirs, their_logits = generated(model, inputs, steps, with_logits=True)
    assert torch.equal(ours, theirs)
    assert our_logits.shape == their_logits.shape
    torch.testing.assert_close(our_logits, their_logits, rtol=1e-5, atol=1e-4)
    return ours


# --- the family ---


def test_the_family_is_read_from_the_config(qwen_stand_in):
    assert captioner_family(qwen_stand_in) == "chat-vlm"
    for model_type in ("qwen2_5_vl", "qwen2_vl", "qwen3_vl"):
        assert family_of(SimpleNamespace(model_type=model_type), "m") == "chat-vlm"
    with pytest.raises(ValueError, match=r"model_type 'llava'.*chat-vlm: model_type qwen2_5_vl"):
        family_of(SimpleNamespace(model_type="llava"), "m")
    captioner = load_captioner(qwen_stand_in, CPU)
    assert (captioner.family, captioner.dtype, captioner.end_ids) == ("chat-vlm", torch.float32, [IM_END, ENDOFTEXT])
    assert type(captioner.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(captioner.processor).__name__ == "Qwen2_5_VLProcessor"


def test_a_checkpoint_that_does_not_fit_is_refused(qwen_stand_in, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(qwen_stand_in, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3  # one layer more than the checkpoint holds
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"missing keys: model\.language_model\.layers\.2\."):
        load_captioner(str(broken), CPU)


# --- the caption loop ---


@pytest.mark.parametrize("instruction", [DEFAULT_INSTRUCTION, "What is this?"])
def test_greedy_captions_are_exactly_transformers_generate_end_included(qwen, instruction):
    model, processor = qwen
    ours = assert_same_as_generate(model, prefix_inputs(model, processor, solids(), instruction), STEPS)
    ends = [row.tolist().index(IM_END) if IM_END in row else None for row in ours]
    assert any(e is not None and e > 0 for e in ends), ends  # a caption ends at <|im_end|> after step 0 ...
    assert any(e is None for e in ends), ends  # ... while another runs on: padding is checked too


def test_images_of_other_sizes_caption_in_their_own_groups_exactly_as_generate(qwen):
    model, processor = qwen
    images = [*solids(64)[:2], *views(2, 224)]
    assert chat_vlm.size_groups(images) == [[0, 1], [2, 3]]
    captions = caption_batch(model, processor, images, [0, 1, 2, 3], greedy())
    expected = []
    for group in (images[:2], images[2:]):
        inputs = prefix_inputs(model, processor, group, DEFAULT_INSTRUCTION)
        assert (inputs["input_ids"] == IMAGE_PAD).sum(1).tolist() == [4 if group[0].size[0] == 64 else 16] * 2
        expected += [[text] for text in decode_captions(processor.tokenizer, generated(model, inputs, STEPS), [IM_END])]
    assert captions == expected


def test_the_prompt_is_the_chat_template_with_the_instruction(qwen):
    model, processor = qwen
    assert chat_vlm.chat_prompt(processor, DEFAULT_INSTRUCTION) == EXPECTED_PROMPT
    assert chat_vlm.instruction(GenerationSettings()) == DEFAULT_INSTRUCTION
    assert chat_vlm.instruction(GenerationSettings(prompt="Name it.")) == "Name it."
    inputs = prefix_inputs(model, processor, views(1, 224), DEFAULT_INSTRUCTION)
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(VISION_START)
    assert ids[start + 1 : start + 17] == [IMAGE_PAD] * 16  # 224 px at max_pixels 112^2: 8 x 8 patches, 2 x 2 merged
    assert ids[start + 17] == VISION_END
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    text = processor.tokenizer.decode(ids).replace("<|image_pad|>" * 16, "<|image_pad|>")
    assert text == EXPECTED_PROMPT
    plain = decode_captions(processor.tokenizer, tokens(model, processor, views(), greedy()), [IM_END])
    asked = decode_captions(
        processor.tokenizer, tokens(model, processor, views(), greedy(), instruction="What is this?"), [IM_END]
    )
    assert plain != asked


def test_the_image_prefix_is_computed_once_per_image(qwen):
    model, processor = qwen
    calls = {"vision": [], "text": []}
    hooks = [
        model.model.visual.register_forward_hook(
            lambda m, args, kwargs, out: calls["vision"].append(len(kwargs["grid_thw"])), with_kwargs=True
        ),
        model.model.language_model.register_forward_hook(
            lambda m, args, kwargs, out: calls["text"].append(tuple(kwargs["inputs_embeds"].shape[:2])),
            with_kwargs=True,
        ),
    ]
    try:
        captions = caption_batch(model, processor, views(3), [1, 2, 3], GenerationSettings(max_new_tokens=8))
    finally:
        for hook in hooks:
            hook.remove()
    assert [len(c) for c in captions] == [10, 10, 10]
    assert calls["vision"] == [3]  # one vision pass over the 3 images, not 30
    prefills = [shape for shape in calls["text"] if shape[1] > 1]
    assert len(prefills) == 1
    assert prefills[0][0] == 3
    assert {shape for shape in calls["text"] if shape[1] == 1} == {(30, 1)}  # ... whose cache the 10 samples share


def test_sampled_captions_are_seeded_per_image_and_independent_of_batching(qwen):
    model, processor = qwen
    images = noise(3)
    settings = GenerationSettings(num_captions=3, max_new_tokens=8)
    together = caption_batch(model, processor, images, [11, 12, 13], settings)
    alone = caption_batch(model, processor, images[1:2], [12], settings)
    again = caption_batch(model, processor, images, [11, 12, 13], settings)
    other = caption_batch(model, processor, images, [14, 15, 16], settings)
    mixed = caption_batch(model, processor, [views(1, 96)[0], images[1]], [7, 12], settings)
    assert together == again
    assert together[1] == alone[0] == mixed[1]
    assert together != other
    assert all(len(set(group)) > 1 for group in together)  # the n samples of a view differ


def test_greedy_gives_the_one_most_likely_caption_n_times(qwen):
    model, processor = qwen
    captions = caption_batch(model, processor, solids()[:2], [0, 1], greedy())
    rows = []
    hook = model.model.language_model.register_forward_hook(
        lambda m, args, kwargs, out: rows.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        repeated = caption_batch(model, processor, solids()[:2], [7, 8], greedy(num_captions=3))
    finally:
        hook.remove()
    assert repeated == [group * 3 for group in captions]
    assert set(rows) == {2}  # decoded once per image, not once per caption


@pytest.mark.parametrize("images", [views(4, 96), solids(64)[:4], views(4, 224)], ids=["views", "solids", "views224"])
def test_the_stand_in_ends_its_sampled_captions_at_im_end_after_about_ten_tokens(qwen, images):
    """As a trained captioner does; a random model never ends a caption and would run to max_new_tokens."""
    model, processor = qwen
    sampled = tokens(model, processor, images, GenerationSettings(max_new_tokens=30), seeds=[0, 1, 2, 3])
    lengths = [row.index(IM_END) for row in sampled.tolist()]  # raises if a caption did not end
    assert 5 <= min(lengths)
    assert max(lengths) <= 20
    assert all(set(row[end + 1 :]) <= {PAD} for row, end in zip(sampled.tolist(), lengths))
    captions = decode_captions(processor.tokenizer, sampled, end_tokens(model))
    assert all(c and "<|" not in c for c in captions)


def test_min_new_tokens_holds_back_the_end_of_every_caption(qwen):
    model, processor = qwen
    free = tokens(model, processor, solids(), greedy())
    held = tokens(model, processor, solids(), greedy(min_new_tokens=STEPS))
    assert IM_END in free
    assert IM_END not in held
    assert ENDOFTEXT not in held
    for short, full in zip(free.tolist(), held.tolist()):
        end = short.index(IM_END) if IM_END in short else STEPS
        assert full[:end] == short[:end]


# --- Qwen2-VL and Qwen3-VL run through the same code ---


def _tiny_qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = {
        "vocab_size": 152064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    }
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2}
    config = Qwen2VLConfig(text_config=text, vision_config=vision)
    return Qwen2VLForConditionalGeneration(config).float().eval(), 14


def _tiny_qwen3_vl():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True, "rope_theta": 5e6}
    text = {
        "vocab_size": 152064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rope_parameters": rope,
    }
    vision = {
        "depth": 3,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0, 1],
    }
    config = Qwen3VLConfig(text_config=text, vision_config=vision)
    return Qwen3VLForConditionalGeneration(config).float().eval(), 16


@pytest.mark.parametrize("build, processor_class", [(_tiny_qwen2_vl, "Qwen2VL"), (_tiny_qwen3_vl, "Qwen3VL")])
def test_qwen2_vl_and_qwen3_vl_caption_greedily_exactly_as_generate(qwen, build, processor_class):
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    _, stand_in_processor = qwen
    torch.manual_seed(0)
    model, patch = build()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = [IM_END, ENDOFTEXT], PAD
    image_processor = Qwen2VLImageProcessor(min_pixels=(2 * patch) ** 2, max_pixels=(4 * patch) ** 2, patch_size=patch)
    processor = getattr(transformers, f"{processor_class}Processor")(
        image_processor=image_processor,
        tokenizer=stand_in_processor.tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    assert captioner_family_of(model) == "chat-vlm"
    images = noise(3)
    assert_same_as_generate(model, prefix_inputs(model, processor, images, DEFAULT_INSTRUCTION), 8)
    sampled = caption_batch(model, processor, images, [0, 1, 2], GenerationSettings(num_captions=2, max_new_tokens=4))
    assert [len(group) for group in sampled] == [2, 2, 2]


def captioner_family_of(model) -> str:
    return family_of(model.config, "in-memory")


# --- the stand-in keeps Qwen/Qwen2.5-VL-7B-Instruct's contract ---


def test_the_stand_ins_config_is_the_hubs_file_with_only_sizes_shrunk(qwen_stand_in, qwen):
    saved = json.loads((Path(qwen_stand_in) / "config.json").read_text())
    assert saved == json.loads(json.dumps(qwen2_5_vl_config(QWEN2_5_VL_TINY_SIZES)))
    sizes = {key for block in QWEN2_5_VL_SIZE_KEYS.values() for key in block}
    for key, value in QWEN2_5_VL_CONFIG.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner not in sizes:
                    assert saved[key][inner] == inner_value, (key, inner)
        elif key not in sizes:
            assert saved[key] == value, key
    expected_ids = {
        "bos_token_id": ENDOFTEXT,
        "eos_token_id": IM_END,
        "image_token_id": IMAGE_PAD,
        "video_token_id": 151656,
        "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END,
        "vision_token_id": 151654,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
        "rope_theta": 1000000.0,
    }
    assert {key: saved[key] for key in expected_ids} == expected_ids
    vision = saved["vision_config"]
    assert (vision["patch_size"], vision["temporal_patch_size"], vision["spatial_merge_size"]) == (14, 2, 2)
    assert (vision["window_size"], vision["tokens_per_second"]) == (112, 2)
    head_dim = saved["hidden_size"] // saved["num_attention_heads"]
    mrope = saved["rope_scaling"]["mrope_section"]
    assert sum(mrope) * 2 == head_dim
    assert mrope == [s * head_dim // 128 for s in (16, 24, 24)]
    model, _ = qwen
    assert model.lm_head.weight is not model.model.language_model.embed_tokens.weight  # its own output embedding
    assert model.lm_head.weight.shape[0] == 152064
    assert model.config.text_config.rope_parameters["mrope_section"] == mrope
    assert model.config.vision_config.fullatt_block_indexes == [vision["depth"] - 1]
    assert model.config.image_token_id == IMAGE_PAD
    with pytest.raises(ValueError, match="only change sizes"):
        qwen2_5_vl_config({"text": {"eos_token_id": 2}})
    with pytest.raises(ValueError, match="mrope_section"):
        qwen2_5_vl_config({"text": {"hidden_size": 128}})


def test_the_real_size_config_builds_qwen2_5_vl_7b():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_dict(qwen2_5_vl_config()))
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert 8.2 < billions < 8.35  # "7B": the 7.6 B language model (untied output) and the 0.68 B vision tower
    assert 0.67 < sum(p.numel() for p in model.model.visual.parameters()) / 1e9 < 0.69
    assert len(model.model.language_model.layers) == 28
    assert len(model.model.visual.blocks) == 32
    assert model.model.language_model.layers[0].self_attn.k_proj.out_features == 4 * 128  # 4 KV heads


def test_the_stand_ins_generation_config_ends_at_im_end_and_endoftext(qwen_stand_in, qwen):
    saved = json.loads((Path(qwen_stand_in) / "generation_config.json").read_text())
    assert saved == QWEN2_5_VL_GENERATION_CONFIG
    assert (saved["eos_token_id"], saved["pad_token_id"], saved["bos_token_id"]) == ([IM_END, ENDOFTEXT], PAD, PAD)
    model, processor = qwen
    assert end_tokens(model) == [IM_END, ENDOFTEXT]
    assert pad_token(model, processor.tokenizer) == PAD


def test_the_stand_ins_processor_is_the_hubs(qwen_stand_in, qwen):
    _, processor = qwen
    folder = Path(qwen_stand_in)
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    assert {k: v for k, v in saved.items() if k != "max_pixels"} == {
        k: v for k, v in json.loads(json.dumps(QWEN2_5_VL_PREPROCESSOR_CONFIG)).items() if k != "max_pixels"
    }
    assert saved["max_pixels"] == 112 * 112 < QWEN2_5_VL_PREPROCESSOR_CONFIG["max_pixels"] == 12845056
    assert (saved["min_pixels"], saved["patch_size"], saved["merge_size"], saved["temporal_patch_size"]) == (
        3136,
        14,
        2,
        2,
    )
    assert saved["image_mean"] == real_models.OPENAI_CLIP_MEAN
    assert saved["image_std"] == real_models.OPENAI_CLIP_STD
    assert json.loads((folder / "chat_template.json").read_text()) == {"chat_template": QWEN2_5_VL_CHAT_TEMPLATE}
    image_processor = processor.image_processor
    assert type(image_processor).__name__ == "Qwen2VLImageProcessor"
    assert (image_processor.size["shortest_edge"], image_processor.size["longest_edge"]) == (3136, 112 * 112)
    assert processor.chat_template == QWEN2_5_VL_CHAT_TEMPLATE
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "model.safetensors"):
        assert (folder / name).is_file(), name


def test_the_stand_ins_tokenizer_has_qwen2s_ids_and_layout(qwen):
    _, processor = qwen
    tokenizer = processor.tokenizer
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == 151665
    for content, index, special in QWEN2_ADDED_TOKENS:
        assert tokenizer.convert_tokens_to_ids(content) == index
        assert (content in tokenizer.all_special_tokens) == special, content
    assert tokenizer.convert_tokens_to_ids(["\u010a", "\u0120", "!"]) == [198, 220, 0]  # "\n", " ", byte order
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    ids = tokenizer("a red mug.\n")["input_ids"]
    assert ENDOFTEXT not in ids
    assert IM_START not in ids
    assert tokenizer.decode(ids) == "a red mug.\n"
    assert tokenizer.decode([*ids, IM_END, PAD], skip_special_tokens=True) == "a red mug.\n"
    assert tokenizer("<|im_start|>user")["input_ids"][0] == IM_START  # special tokens are not split
    assert tokenizer.model_max_length == 131072
    assert tokenizer.chat_template == QWEN2_5_VL_CHAT_TEMPLATE


def test_the_stand_ins_tokenizer_files_are_laid_out_as_qwen2s(qwen_stand_in):
    folder = Path(qwen_stand_in)
    saved = json.loads((folder / "tokenizer.json").read_text())
    model = saved["model"]
    assert (model["type"], model["byte_fallback"], model["unk_token"]) == ("BPE", False, None)
    assert len(model["vocab"]) == 151643
    assert sorted(model["vocab"].values()) == list(range(151643))
    assert len(model["merges"]) == 151387
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    assert all(a + b in model["vocab"] and a in model["vocab"] and b in model["vocab"] for a, b in merges)
    assert saved["normalizer"]["type"] == "NFC"
    assert [p["type"] for p in saved["pre_tokenizer"]["pretokenizers"]] == ["Split", "ByteLevel"]
    assert saved["decoder"]["type"] == "ByteLevel"
    assert [(t["content"], t["id"], t["special"]) for t in saved["added_tokens"]] == QWEN2_ADDED_TOKENS
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == (None, "<|im_end|>", "<|endoftext|>")
    assert config["chat_template"] == QWEN2_5_VL_CHAT_TEMPLATE
    assert {int(k): v["content"] for k, v in config["added_tokens_decoder"].items()} == {
        index: content for content, index, _ in QWEN2_ADDED_TOKENS
    }


def test_the_tokenizer_files_serve_a_text_only_qwen2_5_instruct(tmp_path):
    from transformers import AutoTokenizer

    qwen_vocab.write_qwen2_tokenizer_files(tmp_path, QWEN2_5_INSTRUCT_CHAT_TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|vision_start|>"]) == [IM_END, VISION_START]


# --- the GPU suite's builder, at the stand-in's sizes ---


def test_the_benchmark_captioner_builds_the_family_on_the_device_in_the_dtype():
    half = chat_vlm.benchmark_captioner(CPU, torch.bfloat16, tiny=True)
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert half.dtype == torch.bfloat16
    captioner = chat_vlm.benchmark_captioner(CPU, torch.float32, tiny=True)  # not the config's torch_dtype (bf16)
    assert {p.dtype for p in captioner.model.parameters()} == {torch.float32}
    assert captioner.family == "chat-vlm"
    assert captioner.model.device == CPU
    assert captioner.end_ids == [IM_END, ENDOFTEXT]
    assert captioner.model.config.text_config.hidden_size == QWEN2_5_VL_TINY_SIZES["text"]["hidden_size"]
    settings = GenerationSettings(num_captions=10, max_new_tokens=20, min_new_tokens=20)
    rows = []
    hook = captioner.model.model.language_model.register_forward_hook(
        lambda m, args, kwargs, out: rows.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True
    )
    try:
        captions = captioner.caption(views(1, 224), [1], settings)
    finally:
        hook.remove()
    assert [len(group) for group in captions] == [10]
    assert rows[0][0] == 1
    assert rows[1:] == [(10, 1)] * 19


# --- through the caption stage and Snakemake ---


def caption_settings(model: str, **overrides) -> CaptionSettings:
    section = {**default_config()["caption"], "model": model, "max_new_tokens": 12, "seed": 5}
    section.update(batch_size=2, device="cpu", threads=1, **overrides)
    return CaptionSettings.from_config(section)


def metadata(path) -> dict:
    return {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}


def test_the_caption_stage_captions_with_the_chat_vlm_and_records_it(tmp_path, qwen_stand_in, caplog):
    rows = [("a", 0, png((255, 0, 0))), ("a", 1, png((0, 90, 255))), ("b", 0, png((20, 200, 20)))]
    render = write_render_shard(tmp_path / "render.parquet", rows)
    cfg = caption_settings(qwen_stand_in, num_captions=3)
    with caplog.at_level(logging.INFO, logger="ulip2_pipeline.stages.caption"):
        summary = caption_stage.run_shard(
            caption_stage.Inputs(render, "00000"),
            cfg,
            caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet"),
        )
    out = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["uid"], r["view"]) for r in out] == [("a", 0), ("a", 1), ("b", 0)]
    assert summary["views"] == 3
    assert all(len(r["captions"]) == 3 and r["model"] == qwen_stand_in for r in out)
    assert pq.read_table(tmp_path / "cf.parquet").num_rows == 0
    meta = metadata(tmp_path / "c.parquet")
    assert meta["ulip2.caption_family"] == "chat-vlm"
    assert json.loads(meta["ulip2.generation"])["eos_token_id"] == [IM_END, ENDOFTEXT]
    assert json.loads(meta["ulip2.generation"])["prompt_used"] == "Describe this 3D object in one short sentence."
    assert f"loaded {qwen_stand_in} (chat-vlm) on cpu" in caplog.text
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    direct = load_captioner(qwen_stand_in, CPU).caption([red], [out[0]["seed"]], caption_stage.generation_settings(cfg))
    assert out[0]["captions"] == [" ".join(c.split()) for c in direct[0]]


@pytest.mark.e2e
def test_snakemake_captions_a_shard_with_the_qwen2_5_vl_stand_in(tmp_path, qwen_stand_in):
    config = write_config(tmp_path, objects_per_class=1, broken_objects=0)
    config["caption"].update(model=qwen_stand_in, num_captions=2, max_new_tokens=12)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/demo/captions/00000.parquet")
    captions = tmp_path / "results" / "demo" / "captions" / "00000.parquet"
    rows = pq.read_table(captions).to_pylist()
    rendered = pq.read_table(tmp_path / "results" / "demo" / "render" / "00000.parquet").num_rows
    assert len(rows) == rendered > 0
    assert all(len(r["captions"]) == 2 and r["model"] == qwen_stand_in for r in rows)
    meta = metadata(captions)
    assert (meta["ulip2.caption_family"], meta["ulip2.model"]) == ("chat-vlm", qwen_stand_in)
    assert "(chat-vlm) on cpu" in (tmp_path / "logs" / "demo" / "caption" / "00000.log").read_text()
    assert not (tmp_path / "results" / "models").exists()  # a model outside results/models needs no build rule
