"""BLIP-2 captioning: n nucleus-sampled captions per image, image prefix computed once.

Per batch of images: the vision encoder and Q-Former run once per image; the
language model's prefill over [image queries, BOS, prompt] runs once per image;
its KV cache is then repeated for the n samples, which decode together. Every
image draws its random numbers from its own generator, so its captions do not
depend on which batch it landed in.

A caption ends at the model's own end token, read from its generation config:
BLIP-2 OPT ends captions with the newline (id 50118), not the tokenizer's ``</s>``.
With ``do_sample`` off, the loop picks greedily and gives exactly the tokens of
``Blip2ForConditionalGeneration.generate(do_sample=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CAPTION_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class GenerationSettings:
    num_captions: int = 10
    top_p: float = 0.9
    max_new_tokens: int = 30
    temperature: float = 1.0
    prompt: str = ""
    do_sample: bool = True  # False: greedy, every caption of a view is the single most likely one
    min_new_tokens: int = 0  # benchmarks force exact lengths with min == max


def caption_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU (BLIP-2's released weights are half precision), fp32 on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision not in CAPTION_DTYPES:
        raise ValueError(f"caption precision must be auto or one of {sorted(CAPTION_DTYPES)}, not {precision!r}")
    return CAPTION_DTYPES[precision]


def load_captioner(model_id: str, device: torch.device, precision: str = "auto"):
    """Load BLIP-2 and its processor by hub id or local path, in ``caption_dtype(precision, device)``, refusing a
    checkpoint whose weights do not fit (``captioners.load_exactly``). The stages load through
    ``captioners.load_captioner``, which also picks the caption loop from the configuration."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from ulip2_pipeline.models.captioners import load_exactly

    dtype = caption_dtype(precision, device)
    model = load_exactly(Blip2ForConditionalGeneration, model_id, dtype).to(device).eval()
    processor = Blip2Processor.from_pretrained(model_id)
    return model, processor


def vision_dtype(model) -> torch.dtype:
    """The dtype the vision tower really runs in (its patch embedding's weights)."""
    return model.vision_model.embeddings.patch_embedding.weight.dtype


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def end_tokens(model) -> list[int]:
    """The ids that end a caption: the model's generation config (int or list), else its text config."""
    ids = _as_list(getattr(model.generation_config, "eos_token_id", None))
    ids = ids or _as_list(model.config.text_config.eos_token_id)
    if not ids:
        raise ValueError("the caption model names no end token (generation_config.eos_token_id)")
    return ids


def pad_token(model, tokenizer) -> int:
    pad = getattr(model.generation_config, "pad_token_id", None)
    return int(pad if pad is not None else tokenizer.pad_token_id)


def prompt_ids(model, processor, prompt: str, device) -> torch.Tensor:
    """BOS, then the prompt's tokens: what follows the image queries (the processor's layout)."""
    bos = getattr(model.generation_config, "bos_token_id", None)
    ids = [int(bos if bos is not None else model.config.text_config.bos_token_id)]
    if prompt:
        ids += processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long, device=device)


def _nucleus_pick(logits: torch.Tensor, uniforms: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """Sample one token per row by inverse CDF over the top-p set, from given uniforms in [0, 1).

    The set is found among the k most likely tokens, k growing until it holds top_p of
    the mass (a trained captioner's set is a handful of tokens; a full sort of 50k is not needed).
    """
    logits = logits.float() / temperature
    log_total = torch.logsumexp(logits, dim=-1, keepdim=True)
    vocab, k = logits.shape[-1], min(64, logits.shape[-1])
    while True:
        top_logits, order = logits.topk(k, dim=-1)  # descending
        sorted_probs = torch.exp(top_logits - log_total)
        cumulative = sorted_probs.cumsum(dim=-1)
        if k == vocab or bool((cumulative[:, -1] >= top_p).all()):
            break
        k = min(vocab, k * 8)
    keep = (cumulative - sorted_probs) < top_p  # always keeps the most likely token
    sorted_probs = sorted_probs * keep
    cdf = sorted_probs.cumsum(dim=-1)
    target = uniforms.unsqueeze(-1) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)
    return order.gather(-1, choice).squeeze(-1)


def seeded_uniforms(seeds: list[int], steps: int, rows: int, device) -> torch.Tensor:
    """(images * rows, steps) uniforms; image i's rows draw from a generator seeded with ``seeds[i]`` alone."""
    uniforms = torch.stack([torch.rand(steps, rows, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return uniforms.permute(0, 2, 1).reshape(len(seeds) * rows, steps).to(device)


def pick_next_tokens(
    logits: torch.Tensor, step: int, settings: GenerationSettings, eos: torch.Tensor, uniforms: torch.Tensor | None
) -> torch.Tensor:
    """One token per row at ``step``: nucleus-sampled from the step's uniforms, or greedy; no end token
    before ``min_new_tokens`` (``logits`` is changed in place)."""
    if step < settings.min_new_tokens:
        logits[:, eos] = float("-inf")
    if settings.do_sample:
        return _nucleus_pick(logits, uniforms[:, step], settings.top_p, settings.temperature)
    return logits.float().argmax(dim=-1)


def decode_tokens(
    logits: torch.Tensor,
    advance,
    settings: GenerationSettings,
    eos: torch.Tensor,
    pad_id: int,
    uniforms: torch.Tensor | None,
) -> torch.Tensor:
    """The decode loop every family shares: (rows, max_new_tokens) ids from the prefix's last ``logits``,
    ``advance(picked, step)`` returning the next step's logits. A row ends with its first end token (kept)
    and is padded with ``pad_id`` after it; the loop stops when every row has ended."""
    rows, steps = logits.shape[0], settings.max_new_tokens
    tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=logits.device)
    finished = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    for step in range(steps):
        picked = pick_next_tokens(logits, step, settings, eos, uniforms)
        picked = torch.where(finished, torch.full_like(picked, pad_id), picked)
        tokens[:, step] = picked
        finished |= torch.isin(picked, eos)
        if step == steps - 1 or bool(finished.all()):
            break
        logits = advance(picked, step)
    return tokens


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
    prefix_len = prefix.shape[1]

    positions = torch.arange(prefix_len, device=device).unsqueeze(0).expand(batch, -1)
    out = language_model(
        inputs_embeds=prefix,
        attention_mask=torch.ones(batch, prefix_len, device=device),
        position_ids=positions,
        use_cache=True,
    )
    cache = out.past_key_values
    if rows > 1:
        cache.batch_repeat_interleave(rows)  # the n samples share the image prefix
    logits = out.logits[:, -1].repeat_interleave(rows, dim=0)

    uniforms = seeded_uniforms(seeds, steps, rows, device) if settings.do_sample else None

    def advance(picked: torch.Tensor, step: int) -> torch.Tensor:
        nonlocal cache
        out = language_model(
            input_ids=picked.unsqueeze(1),
            past_key_values=cache,
            position_ids=torch.full((batch * rows, 1), prefix_len + step, device=device),
            attention_mask=torch.ones(batch * rows, prefix_len + step + 1, device=device),
            use_cache=True,
        )
        cache = out.past_key_values
        return out.logits[:, -1]

    tokens = decode_tokens(logits, advance, settings, eos, pad_id, uniforms)
    return tokens if rows == n else tokens.repeat_interleave(n, dim=0)


def decode_captions(tokenizer, tokens: torch.Tensor, eos_ids: list[int]) -> list[str]:
    """Each row's text up to (not including) its first end token."""
    texts = []
    for row in tokens.tolist():
        end = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return texts


def caption_batch(model, processor, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
    """``settings.num_captions`` captions for each PIL image; ``seeds[i]`` seeds image i's sampling."""
    tokenizer = processor.tokenizer
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, vision_dtype(model))
    eos_ids = end_tokens(model)
    tokens = sample_caption_tokens(
        model,
        pixels,
        prompt_ids(model, processor, settings.prompt, model.device),
        seeds,
        settings,
        eos_ids,
        pad_token(model, tokenizer),
    )
    texts = decode_captions(tokenizer, tokens, eos_ids)
    n = settings.num_captions
    return [texts[i * n : (i + 1) * n] for i in range(len(images))]


def clean_caption(text: str) -> str:
    return " ".join(text.split())
