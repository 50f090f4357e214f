"""The caption loop ends captions where the model does, and greedily gives exactly transformers' own tokens."""
import numpy as np
import pytest
import torch
from PIL import Image

from stand_ins import stand_ins  # noqa: F401 - fixture
from ulip2_pipeline.caption.blip2 import (GenerationSettings, caption_batch, end_tokens, load_captioner, pad_token,
                                          prompt_ids, sample_caption_tokens)

CPU = torch.device("cpu")
NEWLINE = 50118
STEPS = 8  # below the stand-in's own caption length (about 10), so no caption ends by itself


def views(count=4):
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        pixels = np.full((96, 96, 3), 255, np.uint8)
        x, y = rng.integers(5, 50, 2)
        pixels[y:y + 40, x:x + 40] = rng.integers(0, 255, 3)
        images.append(Image.fromarray(pixels))
    return images


def greedy_tokens(model, processor, images):
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    settings = GenerationSettings(num_captions=1, max_new_tokens=STEPS, do_sample=False)
    return sample_caption_tokens(model, pixels, prompt_ids(model, processor, "", CPU), list(range(len(images))),
                                 settings, end_tokens(model), pad_token(model, processor.tokenizer))


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
    assert any(e is not None and e > 0 for e in ends), ends   # a caption ends at the newline after step 0 ...
    assert any(e is None for e in ends), ends                 # ... while another runs on: padding is checked too
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    theirs = model.generate(pixel_values=pixels, do_sample=False, max_new_tokens=STEPS)[:, 33:]  # 32 queries + BOS
    theirs = torch.nn.functional.pad(theirs, (0, STEPS - theirs.shape[1]), value=1)
    assert torch.equal(ours, theirs)


def test_the_decoded_caption_stops_at_the_end_token(biased):
    model, processor, images = biased
    captions = caption_batch(model, processor, images, [0, 1, 2, 3],
                             GenerationSettings(num_captions=3, max_new_tokens=STEPS, do_sample=False))
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
    stopped = sample_caption_tokens(model, pixels, prompt_ids(model, processor, "", CPU), [9] * 4, settings,
                                    [NEWLINE, second], 1)
    for before, after in zip(plain.tolist(), stopped.tolist()):
        end = next((i for i, t in enumerate(before) if t in (NEWLINE, second)), None)
        if end is None:
            assert after == before
        else:
            assert after[:end + 1] == before[:end + 1] and set(after[end + 1:]) <= {1}


def test_the_stand_in_ends_its_sampled_captions_at_the_newline(stand_ins):
    """As BLIP-2 OPT does, after about ten tokens: a caption loop that stopped on </s> would run to 30."""
    model, processor = load_captioner(stand_ins["blip2"], CPU)
    images = views()
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = sample_caption_tokens(model, pixels, prompt_ids(model, processor, "", CPU), [0, 1, 2, 3],
                                   GenerationSettings(max_new_tokens=30), [NEWLINE], 1)
    lengths = [row.index(NEWLINE) for row in tokens.tolist()]  # raises if a caption did not end
    assert 5 <= min(lengths) and max(lengths) <= 20
    captions = caption_batch(model, processor, images, [0, 1, 2, 3], GenerationSettings(max_new_tokens=30))
    assert all(c and "\n" not in c for group in captions for c in group)
