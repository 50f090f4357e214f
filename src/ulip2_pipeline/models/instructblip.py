"""InstructBLIP captioning (Vicuna or Flan-T5): n nucleus-sampled captions per image, image prefix computed once.

InstructBLIP is BLIP-2 with an instruction: its Q-Former reads the instruction's tokens
(``qformer_input_ids``, its own BERT tokenizer) beside the image, so the 32 query embeddings
depend on what is asked; the language model then reads the same instruction after them. The
instruction is ``GenerationSettings.prompt``, else ``DEFAULT_INSTRUCTION``.

The input is laid out as ``InstructBlipProcessor`` lays it out and
``InstructBlipForConditionalGeneration.generate`` reads it (transformers 5.23): the Q-Former
gets ``[CLS] instruction [SEP]``; the language model gets the 32 query embeddings, then the
language tokenizer's own ids for the instruction: for Vicuna ``</s>`` (its bos token, id 2, as
LAVIS trained it) and the instruction; for Flan-T5 the instruction and ``</s>``.

The loops are BLIP-2's, fed the instruction-aware queries (``image_inputs``):

- Vicuna (decoder-only): ``blip2.sample_caption_tokens``: vision tower and Q-Former once per
  image, the prefill over [queries, ``</s>``, instruction] once per image, its KV cache repeated
  for the n samples.
- Flan-T5 (encoder-decoder): ``blip2_t5.sample_caption_tokens``: vision tower, Q-Former, T5
  encoder and first decoder step once per image, the caches repeated for the n samples.

Captions end at the end tokens of the model's generation config (generation_config.json), padded
with its pad token. Greedy (``do_sample`` off) gives exactly the tokens of
``generate(do_sample=False, generation_config=model.generation_config)``, end token included; the
generation config must be passed because transformers 5.23's InstructBLIP ``generate`` hands
generation to the language model, whose own generation config is made from the text config (for
Vicuna the LLaMA conversion's ids, eos 1 ``<s>``, pad -1, which its tokenizer contradicts). When
the generation config's end tokens leave out the language tokenizer's ``</s>``, ``load`` adds it,
with a warning.
"""

from __future__ import annotations

import logging
import tempfile

import torch

from ulip2_pipeline.models import blip2, blip2_t5
from ulip2_pipeline.models.blip2 import GenerationSettings, decode_captions, end_tokens, pad_token, vision_dtype

log = logging.getLogger(__name__)

# One of the InstructBLIP paper's captioning instruction templates ("<Image>A short image description:").
DEFAULT_INSTRUCTION = "A short image description:"
LANGUAGE_MODELS = ("vicuna", "t5")


def instruction(settings: GenerationSettings) -> str:
    """What the model is asked: ``settings.prompt``, else ``DEFAULT_INSTRUCTION``."""
    return settings.prompt or DEFAULT_INSTRUCTION


def is_decoder_only(model) -> bool:
    return bool(model.config.use_decoder_only_language_model)


def qformer_inputs(processor, text: str, batch: int, device) -> dict:
    """The Q-Former's inputs for ``batch`` images asked ``text``: its tokenizer's ids ([CLS] ... [SEP]) and mask."""
    ids = torch.tensor(processor.qformer_tokenizer(text)["input_ids"], dtype=torch.long, device=device)
    ids = ids.unsqueeze(0).expand(batch, -1)
    return {"qformer_input_ids": ids, "qformer_attention_mask": torch.ones_like(ids)}


def language_prompt_ids(processor, text: str, device) -> torch.Tensor:
    """What follows the query embeddings in the language model's input: the language tokenizer's own ids for
    ``text`` (Vicuna: ``</s>`` prepended as bos; Flan-T5: ``</s>`` appended), the processor's layout after the
    ``<image>`` tokens."""
    return torch.tensor(processor.tokenizer(text)["input_ids"], dtype=torch.long, device=device)


def caption_tokens(model, processor, pixel_values: torch.Tensor, seeds: list[int], settings: GenerationSettings):
    """(images * n, max_new_tokens) token ids from the language model's loop, the instruction read by both the
    Q-Former and the language model."""
    text = instruction(settings)
    device = pixel_values.device
    loop = blip2 if is_decoder_only(model) else blip2_t5
    return loop.sample_caption_tokens(
        model,
        pixel_values,
        language_prompt_ids(processor, text, device),
        seeds,
        settings,
        end_tokens(model),
        pad_token(model, processor.tokenizer),
        image_inputs=qformer_inputs(processor, text, len(pixel_values), device),
    )


def caption_batch(model, processor, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
    """``settings.num_captions`` captions for each PIL image; ``seeds[i]`` seeds image i's sampling."""
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, vision_dtype(model))
    tokens = caption_tokens(model, processor, pixels, seeds, settings)
    texts = decode_captions(processor.tokenizer, tokens, end_tokens(model))
    n = settings.num_captions
    return [texts[i * n : (i + 1) * n] for i in range(len(images))]


def end_at_the_tokenizers_eos(model, tokenizer, model_id: str) -> None:
    """Add the language tokenizer's ``</s>`` to the generation config's end tokens when they leave it out."""
    ends = end_tokens(model)
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in ends:
        log.warning(
            "%s: its generation config ends captions at %s, not at its tokenizer's %s (%d); ending them at both",
            model_id,
            ends,
            tokenizer.eos_token,
            eos,
        )
        model.generation_config.eos_token_id = [*ends, int(eos)]


def load(model_id: str, dtype: torch.dtype):
    """(model, processor) at ``model_id`` (hub id or folder), weights refused unless they fit exactly
    (``captioners.load_exactly``)."""
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    from ulip2_pipeline.models.captioners import load_exactly

    model = load_exactly(InstructBlipForConditionalGeneration, model_id, dtype)
    processor = InstructBlipProcessor.from_pretrained(model_id)
    end_at_the_tokenizers_eos(model, processor.tokenizer, model_id)
    return model, processor


def matches(decoder_only: bool):
    """The family test of a ``transformers.AutoConfig``: InstructBLIP whose language model is (not) decoder-only."""
    return lambda config: (
        config.model_type == "instructblip" and bool(config.use_decoder_only_language_model) == decoder_only
    )


def benchmark_captioner(device: torch.device, dtype: torch.dtype, tiny: bool, language_model: str):
    """InstructBLIP (``language_model`` "vicuna": Vicuna-7B, "t5": Flan-T5-XL) from the real configuration with
    random weights built directly on ``device`` in ``dtype`` (``tiny``: the stand-ins' sizes), its processor
    from the stand-in's files, as a ``captioners.Captioner`` of its family."""
    from transformers import GenerationConfig, InstructBlipConfig, InstructBlipForConditionalGeneration

    from ulip2_pipeline.models import tiny_models
    from ulip2_pipeline.models.captioners import Captioner, family_of
    from ulip2_pipeline.models.real_models import (
        INSTRUCTBLIP_T5_GENERATION_CONFIG,
        INSTRUCTBLIP_T5_MODEL_ID,
        INSTRUCTBLIP_TINY_SIZES,
        INSTRUCTBLIP_VICUNA_GENERATION_CONFIG,
        INSTRUCTBLIP_VICUNA_MODEL_ID,
        instructblip_config,
    )

    if language_model not in LANGUAGE_MODELS:
        raise ValueError(f"InstructBLIP language model must be one of {LANGUAGE_MODELS}, not {language_model!r}")
    config = InstructBlipConfig.from_dict(
        instructblip_config(language_model, INSTRUCTBLIP_TINY_SIZES[language_model] if tiny else None)
    )
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = InstructBlipForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    model = model.to(dtype)  # the language model is built in its text config's torch_dtype (Vicuna: float16)
    model.query_tokens.data = model.query_tokens.data.float()  # from_pretrained keeps them in fp32
    vicuna = language_model == "vicuna"
    model.generation_config = GenerationConfig(
        **(INSTRUCTBLIP_VICUNA_GENERATION_CONFIG if vicuna else INSTRUCTBLIP_T5_GENERATION_CONFIG)
    )
    if vicuna:
        tiny_models.sharpen_llama_next_token_distribution(model)  # a trained captioner's small top-p set
    with tempfile.TemporaryDirectory() as folder:
        processor = tiny_models.instructblip_processor(folder, language_model)
    real_id = INSTRUCTBLIP_VICUNA_MODEL_ID if vicuna else INSTRUCTBLIP_T5_MODEL_ID
    name = f"random {real_id}" + (" (tiny)" if tiny else "")
    family = family_of(model.config, name)
    return Captioner(family, name, model, processor, vision_dtype(model), end_tokens(model))
