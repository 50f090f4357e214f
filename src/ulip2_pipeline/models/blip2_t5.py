"""BLIP-2 Flan-T5 captioning (Cap3D's captioner): n nucleus-sampled captions per image, image prefix encoded once.

The language model is an encoder-decoder. Its input is laid out as transformers 5.23's
``Blip2ForConditionalGeneration.generate`` lays it out for an encoder-decoder: the
processor's ids (32 ``<image>`` tokens, then the prompt's tokens and the ``</s>`` the T5
tokenizer appends; no BOS) embedded, with the image query embeddings written over the
``<image>`` positions; that is, [query embeddings, prompt, ``</s>``] (for no prompt,
[query embeddings, ``</s>``], as LAVIS's ``blip2_t5`` does), all attended to.

Per batch of images: the vision encoder and Q-Former run once per image, the T5 encoder
once per image, and the decoder's first step (from ``decoder_start_token_id``, the pad
token) once per image; its cache (self- and cross-attention, transformers'
``EncoderDecoderCache``) and the encoder's output and mask are then repeated for the n
samples, which decode together. Random numbers, end tokens, ``min_new_tokens`` and
padding follow ``blip2.sample_caption_tokens``; with ``do_sample`` off the loop gives
exactly the tokens of ``generate(do_sample=False)`` (less its leading decoder start token).

transformers 5.23's ``generate`` cannot caption this model from images alone: without
``input_ids`` it builds ``<image>``s + ``text_config.bos_token_id``, which a T5 config has
not; called with the processor's ids for ``text=""`` it uses the layout above.
"""

from __future__ import annotations

import torch

from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    _as_list,
    decode_captions,
    decode_tokens,
    end_tokens,
    pad_token,
    seeded_uniforms,
    vision_dtype,
)


def decoder_start_token(model) -> int:
    """Where decoding starts: the generation config's ``decoder_start_token_id``, else the text config's."""
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(model.config.text_config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("the caption model names no decoder start token (generation_config.decoder_start_token_id)")
    return int(start)


def encoder_prompt_ids(processor, prompt: str, device) -> torch.Tensor:
    """What follows the image queries in the encoder's input: the prompt's tokens with the tokenizer's own
    special tokens (T5: ``</s>`` appended, no BOS), as the processor lays them out after the ``<image>``s."""
    return torch.tensor(processor.tokenizer(prompt)["input_ids"], dtype=torch.long, device=device)


@torch.inference_mode()
def sample_caption_tokens(
    model,
    pixel_values: torch.Tensor,
    prompt_ids: torch.Tensor,
    seeds: list[int],
    settings: GenerationSettings,
    eos_ids: int | list[int],
    pad_id: int,
    image_inputs: dict | None = None,
) -> torch.Tensor:
    """(images * n, max_new_tokens) token ids; rows i*n .. i*n+n-1 belong to image i.

    A row ends with its first end token (kept) and is padded with ``pad_id`` after it. ``image_inputs``: more
    inputs of ``get_image_features`` (InstructBLIP's Q-Former also reads the instruction).
    """
    device = pixel_values.device
    n, steps = settings.num_captions, settings.max_new_tokens
    rows = n if settings.do_sample else 1  # greedy: the n captions are one caption, decoded once
    eos = torch.tensor(_as_list(eos_ids), device=device)
    image_features = model.get_image_features(pixel_values=pixel_values, **(image_inputs or {}))
    queries = image_features.pooler_output  # (B, Q, D): once per image
    language_model = model.language_model
    prompt = language_model.get_input_embeddings()(prompt_ids)
    batch = len(pixel_values)
    prefix = torch.cat([queries.to(prompt.dtype), prompt.unsqueeze(0).expand(batch, -1, -1)], dim=1)
    mask = torch.ones(batch, prefix.shape[1], dtype=torch.long, device=device)
    encoded = language_model.get_encoder()(inputs_embeds=prefix, attention_mask=mask).last_hidden_state

    start = torch.full((batch, 1), decoder_start_token(model), dtype=torch.long, device=device)
    out = language_model(encoder_outputs=(encoded,), attention_mask=mask, decoder_input_ids=start, use_cache=True)
    cache = out.past_key_values  # EncoderDecoderCache: the decoder's own keys/values and the encoder's
    if rows > 1:  # the n samples share the image prefix
        cache.batch_repeat_interleave(rows)
        encoded, mask = encoded.repeat_interleave(rows, dim=0), mask.repeat_interleave(rows, dim=0)
    logits = out.logits[:, -1].repeat_interleave(rows, dim=0)

    uniforms = seeded_uniforms(seeds, steps, rows, device) if settings.do_sample else None

    def advance(picked: torch.Tensor, step: int) -> torch.Tensor:
        nonlocal cache
        out = language_model(
            encoder_outputs=(encoded,),
            attention_mask=mask,
            decoder_input_ids=picked.unsqueeze(1),
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        return out.logits[:, -1]

    tokens = decode_tokens(logits, advance, settings, eos, pad_id, uniforms)
    return tokens if rows == n else tokens.repeat_interleave(n, dim=0)


def caption_batch(model, processor, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
    """``settings.num_captions`` captions for each PIL image; ``seeds[i]`` seeds image i's sampling."""
    tokenizer = processor.tokenizer
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, vision_dtype(model))
    eos_ids = end_tokens(model)
    tokens = sample_caption_tokens(
        model,
        pixels,
        encoder_prompt_ids(processor, settings.prompt, model.device),
        seeds,
        settings,
        eos_ids,
        pad_token(model, tokenizer),
    )
    texts = decode_captions(tokenizer, tokens, eos_ids)
    n = settings.num_captions
    return [texts[i * n : (i + 1) * n] for i in range(len(images))]
