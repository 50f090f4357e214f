"""Chat vision-language models as captioners (``chat-vlm``): Qwen2.5-VL, and Qwen2-VL and Qwen3-VL through the
same code: n nucleus-sampled captions per image, the image prefix computed once.

The prompt is the model's own chat template applied to one user message, [the image, an
instruction], with the generation prompt appended (``<|im_start|>assistant\\n``); the
instruction is ``GenerationSettings.prompt`` when it is set, else ``DEFAULT_INSTRUCTION``.
(For BLIP-2 ``prompt`` is a text the caption continues; here it is what the model is asked.)
Qwen2.5-VL-Instruct's template puts its default system prompt, "You are a helpful
assistant.", before the user message.

Per batch of images: the images are grouped by size (the processor's dynamic resolution
gives each size its own number of image tokens; views of one render resolution form one
group, so a shard's batch is one group). Per group, the vision tower runs once per image and
the language model's prefill over [chat template with the image tokens] once per image, with
the 3-D M-RoPE positions the model's own ``get_rope_index`` gives the prompt; the KV cache is
then repeated for the n samples (``batch_repeat_interleave``), which decode together. A
generated token's position is the same in the three M-RoPE sections: one past the prompt's
largest position, plus the step (what ``generate`` computes as ``cache length + rope_deltas``);
the positions are passed to every forward call, so nothing is read from or left in the model's
``rope_deltas``. Random numbers, end tokens, ``min_new_tokens`` and padding follow
``blip2.sample_caption_tokens``: image i's uniforms come from its own generator seeded with
``seeds[i]``, so its captions do not depend on its batch. With ``do_sample`` off the loop gives
exactly the tokens of ``generate(do_sample=False)`` run without a repetition penalty.

A caption ends at the model's end tokens from its generation config (Qwen2.5-VL-Instruct:
``<|im_end|>`` 151645 and ``<|endoftext|>`` 151643). The generation config's sampling fields
(Qwen2.5-VL-Instruct: ``repetition_penalty`` 1.05, ``temperature`` 1e-6) are not used: the
pipeline's ``GenerationSettings`` decide how every family samples, and they are what the
caption stage records.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    _as_list,
    decode_captions,
    decode_tokens,
    end_tokens,
    pad_token,
    seeded_uniforms,
)

FAMILY = "chat-vlm"
DEFAULT_INSTRUCTION = "Describe this 3D object in one short sentence."
# config.model_type of the models this family runs: one processor call, one get_rope_index, one forward.
MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")


def matches(config) -> bool:
    return getattr(config, "model_type", None) in MODEL_TYPES


def load(model_id: str, dtype: torch.dtype):
    """The model (``AutoModelForImageTextToText``, refusing weights that do not fit) and its ``AutoProcessor``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ulip2_pipeline.models.captioners import load_exactly

    return load_exactly(AutoModelForImageTextToText, model_id, dtype), AutoProcessor.from_pretrained(model_id)


def vision_dtype(model) -> torch.dtype:
    """The dtype the vision tower really runs in (its patch embedding's weights)."""
    return model.model.visual.patch_embed.proj.weight.dtype


def instruction(settings: GenerationSettings) -> str:
    return settings.prompt or DEFAULT_INSTRUCTION


def chat_prompt(processor, text: str) -> str:
    """The chat template applied to one user message [image, ``text``], ending with the assistant's turn."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prefix_inputs(model, processor, images: list, text: str) -> dict:
    """The processor's tensors for ``images`` (all of one size) under one prompt, on the model's device: input ids
    with the image tokens expanded, attention mask, ``mm_token_type_ids``, ``pixel_values``, ``image_grid_thw``."""
    inputs = processor(text=[chat_prompt(processor, text)] * len(images), images=images, return_tensors="pt")
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(vision_dtype(model))
    return inputs


def prompt_positions(model, inputs: dict) -> torch.Tensor:
    """(3, images, prompt length) M-RoPE positions of the prompt, as the model computes them for ``generate``."""
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    return positions


@torch.inference_mode()
def sample_caption_tokens(
    model, inputs: dict, seeds: list[int], settings: GenerationSettings, eos_ids: int | list[int], pad_id: int
) -> torch.Tensor:
    """(images * n, max_new_tokens) token ids for the images of ``inputs`` (``prefix_inputs``); rows
    i*n .. i*n+n-1 belong to image i. A row ends with its first end token (kept), then ``pad_id``."""
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    device = input_ids.device
    n, steps = settings.num_captions, settings.max_new_tokens
    rows = n if settings.do_sample else 1  # greedy: the n captions are one caption, decoded once
    eos = torch.tensor(_as_list(eos_ids), device=device)
    batch = input_ids.shape[0]

    positions = prompt_positions(model, inputs)
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
    )  # the vision tower and the prefill: once per image
    cache = out.past_key_values
    if rows > 1:
        cache.batch_repeat_interleave(rows)  # the n samples share the image prefix
    logits = out.logits[:, -1].repeat_interleave(rows, dim=0)
    mask = mask.repeat_interleave(rows, dim=0)
    first = (positions.amax(dim=(0, 2)) + 1).repeat_interleave(rows)  # the first generated token's position

    uniforms = seeded_uniforms(seeds, steps, rows, device) if settings.do_sample else None

    def advance(picked: torch.Tensor, step: int) -> torch.Tensor:
        nonlocal cache, mask
        mask = torch.cat([mask, mask.new_ones(batch * rows, 1)], dim=1)
        out = model(
            input_ids=picked.unsqueeze(1),
            attention_mask=mask,
            position_ids=(first + step).view(1, -1, 1).expand(3, -1, -1),
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        return out.logits[:, -1]

    tokens = decode_tokens(logits, advance, settings, eos, pad_id, uniforms)
    return tokens if rows == n else tokens.repeat_interleave(n, dim=0)


def size_groups(images: list) -> list[list[int]]:
    """Indices of the images grouped by size, in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.size), []).append(index)
    return list(groups.values())


def caption_batch(model, processor, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
    """``settings.num_captions`` captions for each PIL image; ``seeds[i]`` seeds image i's sampling."""
    tokenizer = processor.tokenizer
    eos_ids = end_tokens(model)
    pad_id = pad_token(model, tokenizer)
    text = instruction(settings)
    n = settings.num_captions
    captions: list[list[str]] = [[] for _ in images]
    for group in size_groups(images):
        inputs = prefix_inputs(model, processor, [images[i] for i in group], text)
        tokens = sample_caption_tokens(model, inputs, [seeds[i] for i in group], settings, eos_ids, pad_id)
        texts = decode_captions(tokenizer, tokens, eos_ids)
        for k, index in enumerate(group):
            captions[index] = texts[k * n : (k + 1) * n]
    return captions


def benchmark_captioner(device: str | torch.device, dtype: torch.dtype, tiny: bool):
    """A ``captioners.Captioner`` of Qwen2.5-VL-7B-Instruct's configuration (``tiny``: the stand-in's sizes) with
    random weights, built directly on ``device`` in ``dtype``, its next-token distribution sharpened as a trained
    model's (``tiny_models.sharpen_qwen_next_token_distribution``), with the stand-in's tokenizer and the real image
    processor (``tiny``: the stand-in's, max_pixels shrunk); for timing ``caption`` at real size without weights."""
    from transformers import AutoProcessor, GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ulip2_pipeline.models.captioners import Captioner
    from ulip2_pipeline.models.real_models import (
        QWEN2_5_VL_GENERATION_CONFIG,
        QWEN2_5_VL_MODEL_ID,
        QWEN2_5_VL_TINY_SIZES,
        qwen2_5_vl_config,
    )
    from ulip2_pipeline.models.tiny_models import sharpen_qwen_next_token_distribution, write_qwen2_5_vl_processor_files

    sizes = QWEN2_5_VL_TINY_SIZES if tiny else None
    device = torch.device(device)
    config = Qwen2_5_VLConfig.from_dict(qwen2_5_vl_config(sizes))
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.generation_config = GenerationConfig(**QWEN2_5_VL_GENERATION_CONFIG)  # what from_pretrained reads
    sharpen_qwen_next_token_distribution(model)  # a trained captioner's small top-p set, not 152k near-equal tokens
    with tempfile.TemporaryDirectory() as folder:
        processor = AutoProcessor.from_pretrained(write_qwen2_5_vl_processor_files(Path(folder), sizes))
    size = "tiny stand-in sizes" if tiny else "real size"
    return Captioner(
        FAMILY,
        f"{QWEN2_5_VL_MODEL_ID} ({size}, random weights)",
        model,
        processor,
        vision_dtype(model),
        end_tokens(model),
    )
