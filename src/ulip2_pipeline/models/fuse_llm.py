"""An instruct LLM that distills an object's view captions into one caption (Cap3D's consolidation step).

The model is any ``AutoModelForCausalLM`` with a chat template in its tokenizer, loaded by hub id or
local folder exactly as it is (``captioners.load_exactly``: weights that do not fit its configuration
are refused), e.g. ``Qwen/Qwen2.5-7B-Instruct``. The prompt is the tokenizer's chat template over a
system message and a user message: the instruction with the object's captions listed in place of
``{captions}``, one per line, numbered. Objects are decoded together with left padding: every
sequence's positions count from its own first token, padding is masked, and each object samples
from its own seeded stream (``blip2.seeded_uniforms``), so an object's caption does not depend on
its batch. Decoding stops at the generation config's end ids (Qwen2.5: ``<|im_end|>``,
``<|endoftext|>``); greedy decoding gives the tokens of ``generate(do_sample=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    _as_list,
    caption_dtype,
    clean_caption,
    decode_captions,
    decode_tokens,
    seeded_uniforms,
)

CAPTIONS_FIELD = "{captions}"
# The schema's defaults of fuse.system and fuse.instruction (tests keep them equal). Cap3D's consolidation prompt
# (GPT-4 there), with the captions listed one per line.
DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_INSTRUCTION = (
    "Given a set of descriptions about the same 3D object, distill these descriptions into one concise caption. "
    "The descriptions are as follows:\n{captions}\nAvoid describing background, surface, and posture. "
    "The caption should be:"
)


def list_captions(captions: list[str]) -> str:
    """The captions as the user message lists them: one per line, numbered from 1."""
    return "\n".join(f"{i}. {caption}" for i, caption in enumerate(captions, 1))


def user_message(instruction: str, captions: list[str]) -> str:
    """``instruction`` with the listed captions in place of ``{captions}`` (the only field it may hold)."""
    if CAPTIONS_FIELD not in instruction:
        raise ValueError(f"the fuse instruction must say where the captions go with {CAPTIONS_FIELD}")
    return instruction.replace(CAPTIONS_FIELD, list_captions(captions))


def chat_messages(system: str, instruction: str, captions: list[str]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user_message(instruction, captions)}]


def chat_prompt(tokenizer, system: str, instruction: str, captions: list[str]) -> str:
    """The text the model continues: the chat template over the messages, ending with the assistant's turn."""
    return tokenizer.apply_chat_template(
        chat_messages(system, instruction, captions), tokenize=False, add_generation_prompt=True
    )


@dataclass
class FuseLLM:
    model_id: str
    model: Any
    tokenizer: Any
    end_ids: list[int]
    pad_id: int

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def prompt_ids(self, system: str, instruction: str, captions: list[str]) -> list[int]:
        text = chat_prompt(self.tokenizer, system, instruction, captions)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def fuse(self, prompts: list[list[int]], seeds: list[int], settings: GenerationSettings) -> list[str]:
        """One caption per prompt (token ids), prompt i's sampling seeded by ``seeds[i]``; whitespace trimmed."""
        tokens = generate_tokens(self.model, prompts, seeds, settings, self.end_ids, self.pad_id)
        return [clean_caption(t) for t in decode_captions(self.tokenizer, tokens, self.end_ids)]


def end_ids_of(model) -> list[int]:
    """The ids that end an answer: the generation config's ``eos_token_id`` (int or list), else the config's."""
    ids = _as_list(getattr(model.generation_config, "eos_token_id", None)) or _as_list(model.config.eos_token_id)
    if not ids:
        raise ValueError("the fuse model names no end token (generation_config.eos_token_id)")
    return ids


def load_fuse_llm(model_id: str, device: torch.device, precision: str = "auto") -> FuseLLM:
    """The instruct LLM at ``model_id`` (hub id or folder) on ``device`` in ``caption_dtype(precision, device)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulip2_pipeline.models.captioners import load_exactly

    tokenizer = AutoTokenizer.from_pretrained(model_id)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model_id}: its tokenizer has no chat template; the fuse stage needs an instruct model")
    model = load_exactly(AutoModelForCausalLM, model_id, caption_dtype(precision, device)).to(device).eval()
    end_ids = end_ids_of(model)
    pad = getattr(model.generation_config, "pad_token_id", None)
    pad = pad if pad is not None else tokenizer.pad_token_id
    return FuseLLM(model_id, model, tokenizer, end_ids, int(pad if pad is not None else end_ids[0]))


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (B, longest): each prompt at the right end of its row."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def generate_tokens(
    model,
    prompts: list[list[int]],
    seeds: list[int],
    settings: GenerationSettings,
    eos_ids: list[int],
    pad_id: int,
) -> torch.Tensor:
    """(B, max_new_tokens) new token ids of each prompt; a row ends with its first end id (kept), then ``pad_id``.

    Sampling (``settings.do_sample``) draws prompt i's uniforms from a generator seeded with ``seeds[i]``
    alone; greedy picks the most likely token."""
    device = model.get_input_embeddings().weight.device
    steps, batch = settings.max_new_tokens, len(prompts)
    ids, mask = left_padded(prompts, pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1]
    lengths = mask.sum(-1, keepdim=True)  # the next position of each row
    eos = torch.tensor(eos_ids, device=device)
    uniforms = seeded_uniforms(seeds, steps, 1, device) if settings.do_sample else None

    def advance(picked: torch.Tensor, step: int) -> torch.Tensor:
        nonlocal cache, mask
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=picked.unsqueeze(1),
            attention_mask=mask,
            position_ids=lengths + step,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        return out.logits[:, -1]

    tokens = decode_tokens(logits, advance, settings, eos, pad_id, uniforms)
    return tokens
