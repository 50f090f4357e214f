"""The caption loop ends captions where the model does, and greedily gives exactly transformers' own tokens;
the token ids it needs are read from the model's configs, and captions are decoded up to their end token."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import stand_ins  # noqa: F401 - fixture

from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    caption_batch,
    caption_dtype,
    clean_caption,
    decode_captions,
    end_tokens,
    load_captioner,
    pad_token,
    prompt_ids,
    sample_caption_tokens,
)

CPU = torch.device("cpu")
NEWLINE = 50118
STEPS = 8  # below the stand-in's own caption length (about 10), so no caption ends by itself


def views(count=4):
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        pixels = np.full((96, 96, 3), 255, np.uint8)
        x, y = rng.integers(5, 50, 2)
        pixels[y : y + 40, x : x + 40] = rng.integers(0, 255, 3)
        images.append(Image.fromarray(pixels))
    return images


def greedy_tokens(model, processor, images):
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    settings = GenerationSettings(num_captions=1, max_new_tokens=STEPS, do_sample=False)
    return sample_caption_tokens(
        model,
        pixels,
        prompt_ids(model, processor, "", CPU),
        list(range(len(images))),
        settings,
        end_tokens(model),
        pad_token(model, processor.tokenizer),
    )


@pytest.fixture(scope="module")
def biased(stand_ins):
    """The stand-in with the newline's (tied) embedding row set so that, greedily, one image's caption
    ends at the newline after step 0 while another's runs on: a random model seldom ends by itself.

    The row is pointed along what sets one image's final hidden state at one step apart from the
    other images', scaled just past the best other logit there; since the row only moves the
    newline's logit, each image's end follows from the unbiased run's hidden states, and the first
    (step, image) that gives that mix is taken.
    """
    model, processor = load_captioner(stand_ins["blip2"], CPU)
    images = views()
    hidden = []
    hook = model.language_model.lm_head.register_forward_hook(lambda m, args, out: hidden.append(args[0][:, -1]))
    greedy_tokens(model, processor, images)
    hook.remove()
    states = torch.stack(hidden)  # (steps, images, dim)
    embeddings = model.language_model.get_input_embeddings().weight
    others = (states @ embeddings.T).index_fill(-1, torch.tensor([NEWLINE]), float("-inf")).max(-1).values
    for step in range(1, STEPS):
        for image in range(len(images)):
            direction = states[step, image] - states[step].mean(0)
            direction = direction / direction.norm()
            row = 1.02 * others[step, image] / (states[step, image] @ direction) * direction
            wins = (states @ row) > others  # (steps, images): where the newline would be the greedy pick
            ends = [int(w.nonzero()[0]) if w.any() else None for w in wins.T]
            if ends[image] == step and None in ends:
                with torch.no_grad():
                    embeddings[NEWLINE] = row
                return model, processor, images
    raise AssertionError("no bias of the newline gives a caption that ends after step 0 beside one that runs on")


def test_greedy_captions_are_exactly_transformers_generate_eos_included(biased):
    model, processor, images = biased
    ours = greedy_tokens(model, processor, images)
    ends = [row.tolist().index(NEWLINE) if NEWLINE in row else None for row in ours]
    assert any(e is not None and e > 0 for e in ends), ends  # a caption ends at the newline after step 0 ...
    assert any(e is None for e in ends), ends  # ... while another runs on: padding is checked too
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    theirs = model.generate(pixel_values=pixels, do_sample=False, max_new_tokens=STEPS)[:, 33:]  # 32 queries + BOS
    theirs = torch.nn.functional.pad(theirs, (0, STEPS - theirs.shape[1]), value=1)
    assert torch.equal(ours, theirs)


def test_the_decoded_caption_stops_at_the_end_token(biased):
    model, processor, images = biased
    captions = caption_batch(
        model,
        processor,
        images,
        [0, 1, 2, 3],
        GenerationSettings(num_captions=3, max_new_tokens=STEPS, do_sample=False),
    )
    tokens = greedy_tokens(model, processor, images)
    for caption_group, row in zip(captions, tokens.tolist()):
        assert len(set(caption_group)) == 1  # greedy: the n captions are the one most likely caption
        end = row.index(NEWLINE) if NEWLINE in row else len(row)
        assert caption_group[0] == processor.tokenizer.decode(row[:end], skip_special_tokens=True)
        assert "\n" not in caption_group[0]


@pytest.mark.parametrize("configured, expected", [(7, [7]), ([7, 50118], [7, 50118])])
def test_end_tokens_come_from_the_generation_config_int_or_list(biased, configured, expected):
    model, _, _ = biased
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = configured
    try:
        assert end_tokens(model) == expected
    finally:
        model.generation_config.eos_token_id = saved


def test_sampled_captions_stop_at_any_of_several_end_tokens(biased):
    model, processor, images = biased
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    settings = GenerationSettings(num_captions=4, max_new_tokens=STEPS)
    plain = sample_caption_tokens(model, pixels, prompt_ids(model, processor, "", CPU), [9] * 4, settings, [NEWLINE], 1)
    second = plain[0, 2].item()  # make a token that was sampled mid-caption an end token as well
    stopped = sample_caption_tokens(
        model, pixels, prompt_ids(model, processor, "", CPU), [9] * 4, settings, [NEWLINE, second], 1
    )
    for before, after in zip(plain.tolist(), stopped.tolist()):
        end = next((i for i, t in enumerate(before) if t in (NEWLINE, second)), None)
        if end is None:
            assert after == before
        else:
            assert after[: end + 1] == before[: end + 1]
            assert set(after[end + 1 :]) <= {1}


def test_the_stand_in_ends_its_sampled_captions_at_the_newline(stand_ins):
    """As BLIP-2 OPT does, after about ten tokens: a caption loop that stopped on </s> would run to 30."""
    model, processor = load_captioner(stand_ins["blip2"], CPU)
    images = views()
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = sample_caption_tokens(
        model,
        pixels,
        prompt_ids(model, processor, "", CPU),
        [0, 1, 2, 3],
        GenerationSettings(max_new_tokens=30),
        [NEWLINE],
        1,
    )
    lengths = [row.index(NEWLINE) for row in tokens.tolist()]  # raises if a caption did not end
    assert 5 <= min(lengths)
    assert max(lengths) <= 20
    captions = caption_batch(model, processor, images, [0, 1, 2, 3], GenerationSettings(max_new_tokens=30))
    assert all(c and "\n" not in c for group in captions for c in group)


def test_greedy_captions_after_a_prompt_are_transformers_continuations(biased):
    model, processor, images = biased
    settings = GenerationSettings(num_captions=1, max_new_tokens=STEPS, do_sample=False, prompt="a photo of")
    ours = [group[0] for group in caption_batch(model, processor, images, [0, 1, 2, 3], settings)]
    unprompted = [
        group[0] for group in caption_batch(model, processor, images, [0, 1, 2, 3], replace(settings, prompt=""))
    ]
    assert ours != unprompted  # the prompt changes what follows it, so the comparison below can tell
    inputs = processor(images=images, text=[settings.prompt] * len(images), return_tensors="pt")
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=STEPS)[:, inputs["input_ids"].shape[1] :]
    assert ours == decode_captions(processor.tokenizer, generated, [NEWLINE])


def test_min_new_tokens_holds_back_the_end_of_every_caption(biased):
    model, processor, images = biased
    free = GenerationSettings(num_captions=1, max_new_tokens=STEPS, do_sample=False)
    ended = [group[0] for group in caption_batch(model, processor, images, [0, 1, 2, 3], free)]
    held = [
        group[0] for group in caption_batch(model, processor, images, [0, 1, 2, 3], replace(free, min_new_tokens=STEPS))
    ]
    assert ended != held  # the caption that ended at the newline goes on to the full length
    for short, full in zip(ended, held):
        assert full.startswith(short)


def test_without_a_generation_pad_token_captions_pad_with_the_tokenizers(biased):
    model, processor, images = biased
    settings = GenerationSettings(num_captions=2, max_new_tokens=STEPS)
    expected = caption_batch(model, processor, images, [0, 1, 2, 3], settings)
    saved = model.generation_config.pad_token_id
    model.generation_config.pad_token_id = None
    try:
        assert caption_batch(model, processor, images, [0, 1, 2, 3], settings) == expected
    finally:
        model.generation_config.pad_token_id = saved


def configured(generation: dict, text: dict) -> SimpleNamespace:
    """A model as far as the token-id readers look: its generation config and its text config."""
    return SimpleNamespace(
        generation_config=SimpleNamespace(**generation), config=SimpleNamespace(text_config=SimpleNamespace(**text))
    )


@pytest.fixture(scope="module")
def processor(stand_ins):
    from transformers import Blip2Processor

    return Blip2Processor.from_pretrained(stand_ins["blip2"])


@pytest.fixture(scope="module")
def tokenizer(processor):
    return processor.tokenizer


@pytest.mark.parametrize("generation", [{}, {"eos_token_id": None}, {"eos_token_id": []}])
def test_without_a_generation_end_token_the_text_configs_ends_captions(generation):
    assert end_tokens(configured(generation, {"eos_token_id": 50118})) == [50118]


def test_the_generation_configs_end_tokens_win_over_the_text_configs():
    assert end_tokens(configured({"eos_token_id": [7, 8]}, {"eos_token_id": 2})) == [7, 8]


def test_a_model_that_names_no_end_token_is_refused():
    with pytest.raises(ValueError, match=r"^the caption model names no end token \(generation_config.eos_token_id\)$"):
        end_tokens(configured({"eos_token_id": None}, {"eos_token_id": None}))


@pytest.mark.parametrize(
    "generation, expected", [({"pad_token_id": 0}, 0), ({"pad_token_id": 5}, 5), ({"pad_token_id": None}, 1), ({}, 1)]
)
def test_the_pad_token_is_the_generation_configs_else_the_tokenizers(generation, expected):
    tokenizer = SimpleNamespace(pad_token_id=1)
    assert pad_token(configured(generation, {}), tokenizer) == expected


@pytest.mark.parametrize(
    "generation, expected", [({"bos_token_id": 0}, 0), ({"bos_token_id": 5}, 5), ({"bos_token_id": None}, 7), ({}, 7)]
)
def test_the_prefix_starts_with_the_generation_configs_bos_else_the_text_configs(generation, expected, processor):
    ids = prompt_ids(configured(generation, {"bos_token_id": 7}), processor, "", CPU)
    assert ids.tolist() == [expected]
    assert ids.dtype == torch.long


def test_the_prompt_follows_bos_without_special_tokens_of_its_own(processor, tokenizer):
    ids = prompt_ids(configured({"bos_token_id": 2}, {}), processor, "a photo of", CPU).tolist()
    assert ids[0] == 2
    assert 2 not in ids[1:]  # the tokenizer's own </s> would repeat BOS
    assert tokenizer.decode(ids[1:]) == "a photo of"


def test_the_prefix_is_made_on_the_given_device(processor):
    ids = prompt_ids(configured({"bos_token_id": 2}, {}), processor, "a photo of", torch.device("meta"))
    assert ids.device.type == "meta"


def test_decoding_stops_at_the_first_of_any_end_token_and_drops_special_tokens(tokenizer):
    words = tokenizer("a red box", add_special_tokens=False)["input_ids"]
    rows = [
        words + [NEWLINE, 1, 1],  # ended at the newline, then padding
        [2] + words + [7, 1],  # </s> sampled mid-caption is not text; 7 is an end token too
        [NEWLINE] + words + [1, 1],  # ended at once: an empty caption
        words + [2] + words[:2],
    ]  # never ended: all of it, less the special token
    texts = decode_captions(tokenizer, torch.tensor(rows), [NEWLINE, 7])
    assert texts == ["a red box", "a red box", "", "a red box" + tokenizer.decode(words[:2])]


def test_clean_caption_collapses_whitespace():
    assert clean_caption("  a  red\n box \t") == "a red box"


def test_an_unknown_caption_precision_is_refused_naming_the_choices():
    with pytest.raises(
        ValueError,
        match=r"caption precision must be auto or one of \['bfloat16', 'float16', "
        r"'float32'\], not 'half'",
    ):
        caption_dtype("half", CPU)


def test_the_captioner_is_loaded_onto_the_requested_device(stand_ins):
    """The meta device stands in for a GPU: a model left on the CPU would not meet its inputs there."""
    model, _ = load_captioner(stand_ins["blip2"], torch.device("meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
