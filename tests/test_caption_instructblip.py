"""InstructBLIP (Vicuna and Flan-T5) as captioner families: chosen from the configuration, the instruction read by
both the Q-Former and the language model, the image prefix computed once per image, greedily exactly transformers'
own tokens; its stand-ins keep the real checkpoints' contract, through the caption stage and Snakemake."""

import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import snakemake, write_config
from PIL import Image
from stand_ins import caption_cfg, png, stand_ins_key, write_render_shard

from ulip2_pipeline.models import bert_vocab, blip2, blip2_t5, instructblip, llama_vocab, t5_vocab, tiny_models
from ulip2_pipeline.models.blip2 import GenerationSettings, end_tokens, pad_token
from ulip2_pipeline.models.captioners import Captioner, captioner_family, load_captioner
from ulip2_pipeline.models.instructblip import DEFAULT_INSTRUCTION, benchmark_captioner, caption_batch
from ulip2_pipeline.models.real_models import (
    INSTRUCTBLIP_PREPROCESSOR_CONFIG,
    INSTRUCTBLIP_SIZE_KEYS,
    INSTRUCTBLIP_T5_CONFIG,
    INSTRUCTBLIP_VICUNA_CONFIG,
    instructblip_config,
)
from ulip2_pipeline.stages import caption as caption_stage

CPU = torch.device("cpu")
LMS = ("vicuna", "t5")
FAMILY = {"vicuna": "instructblip-vicuna", "t5": "instructblip-t5"}
EOS = {"vicuna": 2, "t5": 1}  # </s> in both vocabularies
PAD = {"vicuna": 0, "t5": 0}
IMAGE = {"vicuna": 32001, "t5": 32100}
QFORMER_CLS, QFORMER_SEP, QFORMER_DEC = 101, 102, 30522


def instructblip_key() -> str:
    digest = hashlib.sha256(stand_ins_key().encode())
    for module in (llama_vocab, bert_vocab, t5_vocab, instructblip, blip2, blip2_t5):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def instructblip_stand_ins() -> dict:
    """The two stand-ins' folders, built once per machine and version of their code (as ``stand_ins``)."""
    root = Path(tempfile.gettempdir()) / f"ulip2-stand-ins-instructblip-{instructblip_key()}"
    built = root / "built.json"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            folders = {
                "vicuna": str(tiny_models.build_tiny_instructblip_vicuna(root / "tiny-instructblip-vicuna")),
                "t5": str(tiny_models.build_tiny_instructblip_t5(root / "tiny-instructblip-t5")),
            }
            built.write_text(json.dumps(folders))
    return json.loads(built.read_text())


@pytest.fixture(scope="module")
def loaded(instructblip_stand_ins) -> dict:
    return {lm: load_captioner(folder, CPU) for lm, folder in instructblip_stand_ins.items()}


def views(count=4):
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        pixels = np.full((96, 96, 3), 255, np.uint8)
        x, y = rng.integers(5, 50, 2)
        pixels[y : y + 40, x : x + 40] = rng.integers(0, 255, 3)
        images.append(Image.fromarray(pixels))
    return images


def noise(count=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(count)]


def tokens(captioner, images, settings, seeds=None):
    pixels = captioner.processor(images=images, return_tensors="pt")["pixel_values"]
    seeds = seeds if seeds is not None else list(range(len(images)))
    return instructblip.caption_tokens(captioner.model, captioner.processor, pixels, seeds, settings)


def greedy(steps, **overrides):
    return GenerationSettings(**{"num_captions": 1, "max_new_tokens": steps, "do_sample": False, **overrides})


# --- the family, the instruction, the loops ---


def config_only(folder: Path, config: dict) -> str:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_the_family_comes_from_the_configuration_not_the_name(tmp_path, instructblip_stand_ins):
    """Each stand-in's config.json in a folder named after the other model is still its own family."""
    configs = {lm: json.loads((Path(f) / "config.json").read_text()) for lm, f in instructblip_stand_ins.items()}
    t5_named_vicuna = config_only(tmp_path / "Salesforce" / "instructblip-vicuna-7b", configs["t5"])
    vicuna_named_t5 = config_only(tmp_path / "Salesforce" / "instructblip-flan-t5-xl", configs["vicuna"])
    vicuna_named_blip2 = config_only(tmp_path / "Salesforce" / "blip2-opt-6.7b", configs["vicuna"])
    assert captioner_family(t5_named_vicuna) == "instructblip-t5"
    assert captioner_family(vicuna_named_t5) == "instructblip-vicuna"
    assert captioner_family(vicuna_named_blip2) == "instructblip-vicuna"
    with pytest.raises(ValueError, match=r"(?s)model_type 'llama' is not a captioner.*instructblip-vicuna: .*"):
        captioner_family(config_only(tmp_path / "instructblip-vicuna-13b", configs["vicuna"]["text_config"]))


@pytest.mark.parametrize(
    "lm, prompt, steps",
    [  # steps: one caption of views() runs on past them while the others end (ends and padding both show)
        ("vicuna", "", 11),
        ("vicuna", "Describe the object in detail.", 9),
        ("t5", "", 11),
        ("t5", "a photo of", 11),
    ],
)
def test_greedy_captions_are_exactly_transformers_generate_eos_included(loaded, lm, prompt, steps):
    """generate reads the processor's layout: ``<image>`` x 32 then the language tokenizer's ids (Vicuna: ``</s>``
    first; Flan-T5: ``</s>`` last), the Q-Former the instruction's [CLS] ... [SEP]. transformers 5.23 hands
    generation to the language model, whose own generation config comes from the text config (Vicuna: the
    conversion's LLaMA ids, eos 1, pad -1); the model's generation_config.json is passed to it, as our loop reads it."""
    captioner = loaded[lm]
    model, processor = captioner.model, captioner.processor
    images = views()
    ours = tokens(captioner, images, greedy(steps, prompt=prompt))
    ends = [row.tolist().index(EOS[lm]) if EOS[lm] in row else None for row in ours]
    assert any(e is not None and e > 0 for e in ends), ends
    assert any(e is None for e in ends), ends
    inputs = processor(images=images, text=[prompt or DEFAULT_INSTRUCTION] * len(images), return_tensors="pt")
    assert inputs["input_ids"][0, :32].tolist() == [IMAGE[lm]] * 32
    generated = model.generate(
        **inputs, do_sample=False, max_new_tokens=steps, generation_config=model.generation_config
    )
    if lm == "vicuna":  # a decoder-only model returns its input first
        assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
        theirs = generated[:, inputs["input_ids"].shape[1] :]
    else:  # an encoder-decoder's output starts with the decoder start token
        assert generated[:, 0].tolist() == [0] * len(images)
        theirs = generated[:, 1:]
    theirs = torch.nn.functional.pad(theirs, (0, steps - theirs.shape[1]), value=PAD[lm])
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("lm", LMS)
def test_the_instruction_reaches_the_qformer_and_the_language_model_in_the_processors_layout(loaded, lm):
    captioner = loaded[lm]
    model, processor = captioner.model, captioner.processor
    asked = {"qformer": [], "language": [], "queries": []}
    hooks = [
        model.qformer.embeddings.register_forward_pre_hook(
            lambda m, args, kwargs: asked["qformer"].append(kwargs["input_ids"]), with_kwargs=True
        ),
        model.language_model.get_input_embeddings().register_forward_pre_hook(
            lambda m, args: asked["language"].append(args[0])
        ),
        model.language_projection.register_forward_hook(lambda m, args, out: asked["queries"].append(out)),
    ]
    images = views(2)
    try:
        plain = tokens(captioner, images, greedy(6))
        prompted = tokens(captioner, images, greedy(6, prompt="What colour is the object?"))
    finally:
        for hook in hooks:
            hook.remove()
    expected = processor(images=images, text=[DEFAULT_INSTRUCTION] * 2, return_tensors="pt")
    assert torch.equal(asked["qformer"][0], expected["qformer_input_ids"])  # [CLS] instruction [SEP], per image
    assert asked["qformer"][0][0, 0] == QFORMER_CLS
    assert asked["qformer"][0][0, -1] == QFORMER_SEP
    assert asked["language"][0].tolist() == expected["input_ids"][0, 32:].tolist()  # after the 32 queries
    other = processor(images=images, text=["What colour is the object?"] * 2, return_tensors="pt")
    assert torch.equal(asked["qformer"][1], other["qformer_input_ids"])
    assert not torch.allclose(asked["queries"][0], asked["queries"][1])  # the queries depend on what is asked
    assert not torch.equal(plain, prompted)


@pytest.mark.parametrize("lm", LMS)
def test_no_prompt_asks_the_default_instruction(loaded, lm):
    captioner = loaded[lm]
    settings = GenerationSettings(num_captions=2, max_new_tokens=8)
    assert captioner.caption(views(2), [3, 4], settings) == captioner.caption(
        views(2), [3, 4], GenerationSettings(num_captions=2, max_new_tokens=8, prompt=DEFAULT_INSTRUCTION)
    )
    assert instructblip.instruction(settings) == DEFAULT_INSTRUCTION == "A short image description:"


def test_vicunas_vision_qformer_and_prefill_run_once_per_image(loaded):
    """The prefill over [queries, </s>, instruction] runs once per image; the 10 samples then decode one token each
    step from its repeated KV cache."""
    model = loaded["vicuna"].model
    rows = {"vision": [], "qformer": [], "steps": []}
    hooks = [
        model.vision_model.register_forward_hook(lambda m, a, out: rows["vision"].append(out[0].shape[0])),
        model.qformer.register_forward_hook(lambda m, a, out: rows["qformer"].append(out[0].shape[0])),
        model.language_model.model.register_forward_pre_hook(
            lambda m, a, kwargs: rows["steps"].append(
                tuple(
                    (
                        kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]
                    ).shape[:2]
                )
            ),
            with_kwargs=True,
        ),
    ]
    try:
        captions = caption_batch(
            model, loaded["vicuna"].processor, views(3), [1, 2, 3], GenerationSettings(max_new_tokens=8)
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert [len(c) for c in captions] == [10, 10, 10]
    assert rows["vision"] == [3]
    assert rows["qformer"] == [3]
    prompt = len(loaded["vicuna"].processor.tokenizer(DEFAULT_INSTRUCTION)["input_ids"])
    assert rows["steps"][0] == (3, 32 + prompt)  # the prefix, once per image
    assert set(rows["steps"][1:]) == {(30, 1)}  # then one new token per sample and step


def test_flan_t5s_vision_qformer_encoder_and_cross_attention_run_once_per_image(loaded):
    model = loaded["t5"].model
    rows = {"vision": [], "qformer": [], "encoder": [], "cross": []}
    hooks = [
        model.vision_model.register_forward_hook(lambda m, a, out: rows["vision"].append(out[0].shape[0])),
        model.qformer.register_forward_hook(lambda m, a, out: rows["qformer"].append(out[0].shape[0])),
        model.language_model.encoder.register_forward_hook(lambda m, a, out: rows["encoder"].append(out[0].shape[0])),
        model.language_model.decoder.block[0]
        .layer[1]
        .EncDecAttention.k.register_forward_hook(lambda m, a, out: rows["cross"].append(out.shape[0])),
    ]
    try:
        captions = caption_batch(
            model, loaded["t5"].processor, views(3), [1, 2, 3], GenerationSettings(max_new_tokens=8)
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert [len(c) for c in captions] == [10, 10, 10]
    assert rows == {"vision": [3], "qformer": [3], "encoder": [3], "cross": [3]}


@pytest.mark.parametrize("lm", LMS)
def test_sampled_captions_are_seeded_per_image_and_independent_of_batching(loaded, lm):
    captioner = loaded[lm]
    images = noise(3)
    settings = GenerationSettings(num_captions=3, max_new_tokens=8)
    together = captioner.caption(images, [11, 12, 13], settings)
    alone = captioner.caption(images[1:2], [12], settings)
    again = captioner.caption(images, [11, 12, 13], settings)
    other = captioner.caption(images, [14, 15, 16], settings)
    assert together == again
    assert together[1] == alone[0]
    assert together != other
    assert all(len(set(group)) > 1 for group in together)  # the n samples of a view differ
    said = tokens(captioner, views(), greedy(8)).tolist()
    assert len({tuple(row) for row in said}) > 1  # and what the model says depends on the image


@pytest.mark.parametrize("lm", LMS)
def test_greedy_gives_the_one_most_likely_caption_n_times(loaded, lm):
    captioner = loaded[lm]
    once = captioner.caption(views(2), [0, 1], greedy(8))
    rows = []
    language_model = captioner.model.language_model
    decoder = language_model.model if lm == "vicuna" else language_model.decoder
    hook = decoder.register_forward_hook(lambda m, a, out: rows.append(out[0].shape[0]))
    try:
        repeated = captioner.caption(views(2), [7, 8], greedy(8, num_captions=3))
    finally:
        hook.remove()
    assert repeated == [group * 3 for group in once]
    assert set(rows) == {2}  # decoded once per image, not once per caption


@pytest.mark.parametrize("lm", LMS)
def test_the_stand_in_ends_its_sampled_captions_at_eos_after_about_ten_tokens(loaded, lm):
    """As a trained captioner does; a random model never ends a caption and would run to max_new_tokens."""
    captioner = loaded[lm]
    sampled = tokens(captioner, views(), GenerationSettings(max_new_tokens=30), seeds=[0, 1, 2, 3])
    lengths = [row.index(EOS[lm]) for row in sampled.tolist()]  # raises if a caption did not end
    assert 5 <= min(lengths)
    assert max(lengths) <= 20
    assert all(set(row[end + 1 :]) <= {PAD[lm]} for row, end in zip(sampled.tolist(), lengths))
    captions = captioner.caption(views(), [0, 1, 2, 3], GenerationSettings(max_new_tokens=30))
    assert all(c and "</s>" not in c for group in captions for c in group)


@pytest.mark.parametrize("lm", LMS)
def test_min_new_tokens_holds_back_the_end_of_every_caption(loaded, lm):
    captioner = loaded[lm]
    free = tokens(captioner, views(), greedy(12))
    held = tokens(captioner, views(), greedy(12, min_new_tokens=12))
    assert EOS[lm] in free
    assert EOS[lm] not in held
    for short, full in zip(free.tolist(), held.tolist()):
        end = short.index(EOS[lm]) if EOS[lm] in short else 12
        assert full[:end] == short[:end]


def test_a_generation_config_that_leaves_out_the_tokenizers_eos_gets_it_added(tmp_path, instructblip_stand_ins, caplog):
    """The hub's Vicuna text config carries the LLaMA conversion's eos 1 (<s>); were its generation config to say
    the same, captions would never end at </s> (2)."""
    folder = tmp_path / "instructblip-vicuna"
    shutil.copytree(instructblip_stand_ins["vicuna"], folder)
    (folder / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0})
    )
    with caplog.at_level(logging.WARNING, logger="ulip2_pipeline.models.instructblip"):
        captioner = load_captioner(str(folder), CPU)
    assert captioner.end_ids == [1, 2]
    assert "ends captions at [1], not at its tokenizer's </s> (2)" in caplog.text
    assert load_captioner(instructblip_stand_ins["vicuna"], CPU).end_ids == [2]  # left alone when it ends there


# --- the stand-ins keep Salesforce/instructblip-vicuna-7b's and Salesforce/instructblip-flan-t5-xl's contract ---


@pytest.mark.parametrize("lm, real", [("vicuna", INSTRUCTBLIP_VICUNA_CONFIG), ("t5", INSTRUCTBLIP_T5_CONFIG)])
def test_the_stand_ins_config_is_the_real_one_with_sizes_shrunk(instructblip_stand_ins, loaded, lm, real):
    saved = json.loads((Path(instructblip_stand_ins[lm]) / "config.json").read_text())
    assert saved["model_type"] == "instructblip"
    assert (saved["num_query_tokens"], saved["image_token_index"]) == (32, IMAGE[lm])
    sizes = set().union(*INSTRUCTBLIP_SIZE_KEYS.values()) | {"torch_dtype", "architectures", "_name_or_path"}
    for block in ("vision_config", "qformer_config", "text_config"):
        for key, value in real[block].items():
            if key not in sizes:
                assert saved[block][key] == value, (block, key)
    model = loaded[lm].model
    assert model.config.qformer_config.vocab_size == 30523  # bert-base-uncased + [DEC]
    assert model.qformer.embeddings.word_embeddings.weight.shape[0] == 30523
    assert [hasattr(layer, "crossattention") for layer in model.qformer.encoder.layer] == [True, False]
    assert model.vision_model.embeddings.position_embedding.shape[1] == 257  # 224 px, patch 14
    assert model.query_tokens.shape[1] == 32
    language_model = model.language_model
    assert language_model.lm_head.weight is not language_model.get_input_embeddings().weight  # untied in both
    with pytest.raises(ValueError, match="only change sizes"):
        instructblip_config(lm, {"text_config": {"eos_token_id": 2}})


def test_the_vicuna_stand_in_keeps_llamas_layout_and_the_conversions_ids(loaded):
    model = loaded["vicuna"].model
    text = model.config.text_config
    assert model.config.use_decoder_only_language_model
    assert (text.model_type, text.architectures) == ("llama", ["LLaMAForCausalLM"])
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (0, 1, -1)  # read by nothing of ours
    assert (text.hidden_act, text.rms_norm_eps, text.max_position_embeddings) == ("silu", 1e-6, 2048)
    assert model.language_model.lm_head.weight.shape[0] == 32064
    assert not hasattr(model.language_model.model, "embed_positions")  # rotary positions


def test_the_flan_t5_stand_in_keeps_t5s_layout(loaded):
    model = loaded["t5"].model
    text = model.config.text_config
    assert not model.config.use_decoder_only_language_model
    assert text.model_type == "t5"
    assert text.is_encoder_decoder
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id, text.decoder_start_token_id) == (1, 1, 0, 0)
    assert text.feed_forward_proj == "gated-gelu"
    assert text.scale_decoder_outputs is False
    assert model.language_model.lm_head.weight.shape[0] == 32128


@pytest.mark.parametrize(
    "lm, expected",
    [
        ("vicuna", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
        ("t5", {"bos_token_id": 1, "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}),
    ],
)
def test_the_stand_ins_generation_config_ends_captions_at_eos(instructblip_stand_ins, loaded, lm, expected):
    saved = json.loads((Path(instructblip_stand_ins[lm]) / "generation_config.json").read_text())
    assert {k: v for k, v in saved.items() if k != "_from_model_config"} == expected
    model, processor = loaded[lm].model, loaded[lm].processor
    assert end_tokens(model) == [EOS[lm]] == [processor.tokenizer.eos_token_id]
    assert pad_token(model, processor.tokenizer) == PAD[lm]
    assert loaded[lm].end_ids == [EOS[lm]]


def test_the_vicuna_tokenizer_has_the_conversions_layout(instructblip_stand_ins, loaded):
    tokenizer = loaded["vicuna"].processor.tokenizer
    assert type(tokenizer).__name__ == "LlamaTokenizer"  # transformers 5's LlamaTokenizerFast
    assert len(tokenizer) == 32002
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token) == (
        "</s>",
        "</s>",
        "</s>",
        "[PAD]",
    )
    assert tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]) == [0, 1, 2, 3, 258]
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "<image>"]) == [32000, 32001]
    ids = tokenizer("a red mug")["input_ids"]
    assert ids[0] == 2
    assert 2 not in ids[1:]
    assert tokenizer.convert_ids_to_tokens(ids[1]).startswith("\u2581")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red mug"
    assert tokenizer.decode([*ids, 2, 32000, 32001], skip_special_tokens=True) == "a red mug"
    assert tokenizer.truncation_side == "left"
    folder = Path(instructblip_stand_ins["vicuna"])
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizer"
    saved = json.loads((folder / "tokenizer.json").read_text())  # the file itself, as the hub's tokenizer.json
    assert (saved["model"]["type"], saved["model"]["byte_fallback"], len(saved["model"]["vocab"])) == (
        "BPE",
        True,
        32000,
    )
    assert saved["pre_tokenizer"]["type"] == "Metaspace"
    single = saved["post_processor"]["single"]
    assert [next(iter(part.values()))["id"] for part in single] == ["</s>", "A"]  # </s> prepended, no eos


def test_the_qformer_tokenizer_is_bert_base_uncased_with_dec(instructblip_stand_ins, loaded):
    for lm in LMS:
        tokenizer = loaded[lm].processor.qformer_tokenizer
        assert type(tokenizer).__name__ == "BertTokenizer"
        assert len(tokenizer) == 30523
        assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (
            0,
            100,
            101,
            102,
        )
        assert (tokenizer.mask_token_id, tokenizer.bos_token, tokenizer.bos_token_id) == (103, "[DEC]", QFORMER_DEC)
        assert tokenizer.convert_ids_to_tokens([1, 99, 104, 998]) == [
            "[unused0]",
            "[unused98]",
            "[unused99]",
            "[unused993]",
        ]
        ids = tokenizer("A Red Mug")["input_ids"]
        assert (ids[0], ids[-1]) == (QFORMER_CLS, QFORMER_SEP)
        assert tokenizer.decode(ids, skip_special_tokens=True) == "a red mug"  # lower-cased
        assert (tokenizer.model_max_length, tokenizer.truncation_side) == (512, "left")
        assert (Path(instructblip_stand_ins[lm]) / "qformer_tokenizer" / "tokenizer.json").is_file()


@pytest.mark.parametrize("lm", LMS)
def test_the_stand_ins_processor_is_the_hubs(instructblip_stand_ins, loaded, lm):
    processor = loaded[lm].processor
    folder = Path(instructblip_stand_ins[lm])
    assert type(processor).__name__ == "InstructBlipProcessor"
    assert json.loads((folder / "processor_config.json").read_text()) == {
        "num_query_tokens": 32,
        "processor_class": "InstructBlipProcessor",
    }
    assert json.loads((folder / "preprocessor_config.json").read_text()) == json.loads(
        json.dumps(INSTRUCTBLIP_PREPROCESSOR_CONFIG)
    )
    assert processor.num_query_tokens == 32
    assert (processor.image_processor.size["height"], processor.image_processor.size["width"]) == (224, 224)
    assert int(processor.image_processor.resample) == 3
    assert set(processor(images=views(1), return_tensors="pt")) == {"pixel_values"}
    assert loaded[lm].processor.tokenizer.truncation_side == "left"
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "generation_config.json"):
        assert (folder / name).is_file(), name


@pytest.mark.parametrize("lm, low, high, layers", [("vicuna", 7.8, 8.0, 32), ("t5", 3.9, 4.1, 24)])
def test_the_real_size_config_builds_the_real_model(lm, low, high, layers):
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    with torch.device("meta"):
        model = InstructBlipForConditionalGeneration(InstructBlipConfig.from_dict(instructblip_config(lm)))
    language_model = model.language_model
    own_head = 0 if lm == "vicuna" else language_model.lm_head.weight.numel()  # T5: built tied, its own on the hub
    billions = (sum(p.numel() for p in model.parameters()) + own_head) / 1e9
    assert low < billions < high  # ViT-g/14 ~1.0 B + Q-Former ~0.19 B + Vicuna-7B ~6.74 B / Flan-T5-XL ~2.85 B
    assert len(model.vision_model.encoder.layers) == 39
    blocks = language_model.model.layers if lm == "vicuna" else language_model.decoder.block
    assert len(blocks) == layers


@pytest.mark.parametrize("lm", LMS)
def test_the_benchmark_captioner_builds_the_family_at_stand_in_sizes(lm):
    captioner = benchmark_captioner(CPU, torch.float32, tiny=True, language_model=lm)
    assert isinstance(captioner, Captioner)
    assert captioner.family == FAMILY[lm]
    assert captioner.end_ids == [EOS[lm]]
    assert captioner.dtype == torch.float32
    assert captioner.model.query_tokens.dtype == torch.float32
    assert captioner.model.config.text_config.num_hidden_layers == 2
    assert type(captioner.processor).__name__ == "InstructBlipProcessor"
    captions = captioner.caption(
        views(2), [1, 2], GenerationSettings(num_captions=3, max_new_tokens=5, min_new_tokens=5)
    )
    assert [len(group) for group in captions] == [3, 3]
    with pytest.raises(ValueError, match="language model must be one of"):
        benchmark_captioner(CPU, torch.float32, tiny=True, language_model="opt")


@pytest.mark.parametrize("lm, billions", [("vicuna", 7.91), ("t5", 3.96)])
def test_the_real_size_benchmark_captioner_is_the_real_model_in_the_asked_dtype(lm, billions):
    """Built on the meta device: no memory, the real sizes; everything in bfloat16 but the query tokens (fp32, as
    from_pretrained keeps them), the language model too, whatever its text config's torch_dtype says."""
    captioner = benchmark_captioner(torch.device("meta"), torch.bfloat16, tiny=False, language_model=lm)
    model = captioner.model
    assert (captioner.family, captioner.end_ids, captioner.dtype) == (FAMILY[lm], [EOS[lm]], torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes.pop("query_tokens") == torch.float32
    assert set(dtypes.values()) == {torch.bfloat16}


# --- through the caption stage and Snakemake ---


@pytest.fixture
def render_shard(tmp_path):
    rows = [("a", 0, png((255, 0, 0))), ("a", 1, png((0, 90, 255))), ("b", 0, png((20, 200, 20)))]
    return write_render_shard(tmp_path / "render.parquet", rows)


def metadata(path) -> dict:
    return {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}


@pytest.mark.parametrize("lm", LMS)
def test_the_caption_stage_runs_the_family_the_config_names_and_records_it(
    tmp_path, instructblip_stand_ins, render_shard, caplog, lm
):
    model_dir = instructblip_stand_ins[lm]
    cfg = caption_cfg({"blip2": model_dir}, model=model_dir, num_captions=3, max_new_tokens=12)
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
    meta = metadata(tmp_path / "c.parquet")
    assert meta["ulip2.caption_family"] == FAMILY[lm]
    assert json.loads(meta["ulip2.generation"])["eos_token_id"] == [EOS[lm]]
    assert json.loads(meta["ulip2.generation"])["prompt_used"] == "A short image description:"  # asked, not ""
    assert f"loaded {model_dir} ({FAMILY[lm]}) on cpu" in caplog.text
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    direct = load_captioner(model_dir, CPU).caption([red], [rows[0]["seed"]], caption_stage.generation_settings(cfg))
    assert rows[0]["captions"] == [" ".join(c.split()) for c in direct[0]]


@pytest.mark.e2e
@pytest.mark.parametrize("lm", ["vicuna", "t5"])
def test_snakemake_captions_a_shard_with_each_instructblip_stand_in(tmp_path, instructblip_stand_ins, lm):
    model_dir = instructblip_stand_ins[lm]
    config = write_config(tmp_path, objects_per_class=1, broken_objects=0)
    config["caption"].update(model=model_dir, num_captions=2, max_new_tokens=12)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/demo/captions/00000.parquet")
    captions = tmp_path / "results" / "demo" / "captions" / "00000.parquet"
    rows = pq.read_table(captions).to_pylist()
    rendered = pq.read_table(tmp_path / "results" / "demo" / "render" / "00000.parquet").num_rows
    assert len(rows) == rendered > 0
    assert all(len(r["captions"]) == 2 and r["model"] == model_dir for r in rows)
    meta = metadata(captions)
    assert (meta["ulip2.caption_family"], meta["ulip2.model"]) == (FAMILY[lm], model_dir)
    assert f"({FAMILY[lm]}) on cpu" in (tmp_path / "logs" / "demo" / "caption" / "00000.log").read_text()
    assert not (tmp_path / "results" / "models").exists()
