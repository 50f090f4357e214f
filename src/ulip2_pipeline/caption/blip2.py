"""BLIP-2 captioning: n nucleus-sampled captions per image, image prefix computed once.

Per batch of images: the vision encoder and Q-Former run once per image; the
language model's prefill over [image queries, BOS, prompt] runs once per image;
its KV cache is then repeated for the n samples, which decode together. Every
image draws its random numbers from its own generator, so its captions do not
depend on which batch it landed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationSettings:
    num_captions: int = 10
    top_p: float = 0.9
    max_new_tokens: int = 30
    temperature: float = 1.0
    prompt: str = ""
    min_new_tokens: int = 0  # benchmarks force exact lengths with min == max


def load_captioner(model_id: str, device: torch.device):
    """Load BLIP-2 and its processor by hub id or local path: bf16 on GPU, fp32 on CPU."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = Blip2ForConditionalGeneration.from_pretrained(model_id, dtype=dtype).to(device).eval()
    processor = Blip2Processor.from_pretrained(model_id)
    return model, processor


def _prompt_ids(processor, prompt: str, device) -> torch.Tensor:
    tokenizer = processor.tokenizer
    ids = [tokenizer.bos_token_id]
    if prompt:
        ids += tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long, device=device)


def _nucleus_pick(logits: torch.Tensor, uniforms: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """Sample one token per row by inverse CDF over the top-p set, from given uniforms in [0, 1)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    keep = (cumulative - sorted_probs) < top_p  # always keeps the most likely token
    sorted_probs = sorted_probs * keep
    cdf = sorted_probs.cumsum(dim=-1)
    target = uniforms.unsqueeze(-1) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)
    return order.gather(-1, choice).squeeze(-1)


@torch.inference_mode()
def sample_caption_tokens(model, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, seeds: list[int],
                          settings: GenerationSettings, eos_id: int, pad_id: int) -> torch.Tensor:
    """(images * n, max_new_tokens) sampled token ids; rows i*n .. i*n+n-1 belong to image i."""
    device = pixel_values.device
    n, steps = settings.num_captions, settings.max_new_tokens
    queries = model.get_image_features(pixel_values=pixel_values).pooler_output  # (B, Q, D): once per image
    language_model = model.language_model
    prompt = language_model.get_input_embeddings()(prompt_ids)
    batch = len(pixel_values)
    prefix = torch.cat([queries.to(prompt.dtype), prompt.unsqueeze(0).expand(batch, -1, -1)], dim=1)
    prefix_len = prefix.shape[1]

    positions = torch.arange(prefix_len, device=device).unsqueeze(0).expand(batch, -1)
    out = language_model(inputs_embeds=prefix, attention_mask=torch.ones(batch, prefix_len, device=device),
                         position_ids=positions, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)  # the n samples share the image prefix
    logits = out.logits[:, -1].repeat_interleave(n, dim=0)

    uniforms = torch.stack([torch.rand(steps, n, generator=torch.Generator().manual_seed(s)) for s in seeds])
    uniforms = uniforms.permute(0, 2, 1).reshape(batch * n, steps).to(device)
    tokens = torch.full((batch * n, steps), pad_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch * n, dtype=torch.bool, device=device)
    for step in range(steps):
        if step < settings.min_new_tokens:
            logits[:, eos_id] = float("-inf")
        picked = _nucleus_pick(logits, uniforms[:, step], settings.top_p, settings.temperature)
        picked = torch.where(finished, torch.full_like(picked, pad_id), picked)
        tokens[:, step] = picked
        finished |= picked == eos_id
        if step == steps - 1 or bool(finished.all()):
            break
        position = torch.full((batch * n, 1), prefix_len + step, device=device)
        out = language_model(input_ids=picked.unsqueeze(1), past_key_values=cache, position_ids=position,
                             attention_mask=torch.ones(batch * n, prefix_len + step + 1, device=device),
                             use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
    return tokens


def caption_batch(model, processor, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
    """``settings.num_captions`` captions for each PIL image; ``seeds[i]`` seeds image i's sampling."""
    tokenizer = processor.tokenizer
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
    tokens = sample_caption_tokens(model, pixels, _prompt_ids(processor, settings.prompt, model.device), seeds,
                                   settings, tokenizer.eos_token_id, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    n = settings.num_captions
    return [texts[i * n:(i + 1) * n] for i in range(len(images))]


def clean_caption(text: str) -> str:
    return " ".join(text.split())
