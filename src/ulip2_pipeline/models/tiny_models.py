"""Tiny, randomly initialised stand-ins of the paper's models that keep the real checkpoints' contract.

The demo and the tests cannot download weights, so a rule builds the real
configurations (``real_models``) with only their sizes shrunk, saves them in the
hub's own file layout, and the stages load them by path through the same code
that loads ``Salesforce/blip2-opt-6.7b``, ``ViT-L-14``/``openai`` and
``ViT-bigG-14``/``laion2b_s39b_b160k``. Kept: BLIP-2's special-token ids, its
newline end-of-caption token, 32 query tokens, patch 14, the Q-Former's
cross-attention every 2nd layer, the 50304-row vocabulary, the tokenizer's class
and layout, the image processor; CLIP's activation (QuickGELU for the OpenAI
weights, GELU for bigG) and preprocessing. Their weights are random, so their
captions are noise; only the plumbing and the numerics are real. Two choices of
weights make the random language model behave like a trained captioner where the
pipeline can tell: a confident next-token distribution and captions that end at
the newline after about ten tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulip2_pipeline.models.opt_vocab import write_tokenizer_files
from ulip2_pipeline.models.real_models import (
    BLIP2_GENERATION_CONFIG,
    BLIP2_PREPROCESSOR_CONFIG,
    BLIP2_PROCESSOR_CONFIG,
    BLIP2_TINY_SIZES,
    CLIP_EMBED,
    CLIP_RANK,
    CLIP_TINY_SIZES,
    blip2_config,
    clip_arch_config,
)
from ulip2_pipeline.records import Document

CHECKPOINT_NAME = "open_clip_model.pt"
# Spread of the random language model's next-token logits: a trained captioner is confident (its
# top-p 0.9 set is a handful of tokens); freshly initialised OPT weights spread their mass over
# all 50k tokens. A logit std of 6 over 50k tokens gives a top-p set of about 15.
LOGIT_STD = 6.0


def sharpen_next_token_distribution(model, logit_std: float = LOGIT_STD) -> None:
    """Scale the final layer norm's gain so the random model's logits have about ``logit_std``.

    Logits are the normed hidden state (unit variance per entry) times the tied word
    embeddings (init std ``init_std``), so their std is gain * init_std * sqrt(dim).
    """
    text = model.config.text_config
    decoder = model.language_model.model.decoder
    gain = logit_std / (text.init_std * text.word_embed_proj_dim**0.5)
    with torch.no_grad():
        decoder.final_layer_norm.weight.fill_(gain)


def end_captions_at_newline(model, full_at_step: int = 16, strength: float = 2.0) -> None:
    """Make the random model end its captions at the newline after about ten tokens, as BLIP-2 OPT does.

    A random model repeats its last token and never ends a caption; this adds a growing
    component along the newline's embedding to the position embeddings after the image
    queries and BOS (0 at the first new token, ``strength`` from ``full_at_step`` on), so
    the newline overtakes the repeated token at about step 10. Only weights change.
    """
    text = model.config.text_config
    decoder = model.language_model.model.decoder
    newline = model.language_model.get_input_embeddings().weight[text.eos_token_id]
    direction = newline / newline.norm()
    first = model.config.num_query_tokens + 1  # the first generated token's position
    positions = decoder.embed_positions
    with torch.no_grad():
        for step in range(text.max_position_embeddings - first):
            ramp = strength * min(1.0, step / full_at_step)
            positions.weight[first + step + positions.offset] += ramp * direction


def _write_json(path: Path, data: Document) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def build_blip2(out_dir: str | Path, sizes: Document | None = BLIP2_TINY_SIZES, seed: int = 0) -> Path:
    """Save a Blip2ForConditionalGeneration of the real config (``sizes`` shrunk) with the hub's other files."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(Blip2Config.from_dict(blip2_config(sizes))).eval()
    sharpen_next_token_distribution(model)
    end_captions_at_newline(model)
    model.save_pretrained(out_dir)
    _write_json(out_dir / "generation_config.json", BLIP2_GENERATION_CONFIG)
    _write_json(out_dir / "preprocessor_config.json", BLIP2_PREPROCESSOR_CONFIG)
    _write_json(out_dir / "processor_config.json", BLIP2_PROCESSOR_CONFIG)
    write_tokenizer_files(out_dir)
    return out_dir


def build_tiny_blip2(out_dir: str | Path, seed: int = 0) -> Path:
    return build_blip2(out_dir, BLIP2_TINY_SIZES, seed)


def tiny_clip_name(clip: Document) -> str:
    return f"ulip2-tiny-{clip['arch']}" + ("-quickgelu" if clip["quick_gelu"] else "")


def build_tiny_clip(out_dir: str | Path, clip: Document = CLIP_RANK, seed: int = 0) -> dict:
    """Save a tiny OpenCLIP model of ``clip``'s architecture: its architecture JSON and a checkpoint file.

    Returns the ``arch``, ``pretrained`` and ``arch_config`` that load it.
    """
    import open_clip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = tiny_clip_name(clip)
    config_path = out_dir / f"{name}.json"
    _write_json(config_path, clip_arch_config(clip, CLIP_TINY_SIZES))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = out_dir / CHECKPOINT_NAME
    torch.save(model.state_dict(), weights)
    return {"arch": name, "pretrained": str(weights), "arch_config": str(config_path)}


def build_tiny_models(blip2_dir: str | Path, clip_rank_dir: str | Path, clip_embed_dir: str | Path) -> dict:
    """Every stand-in the demo uses: BLIP-2 OPT, the rank CLIP (ViT-L-14/openai), the embed CLIP (ViT-bigG-14)."""
    return {
        "blip2": str(build_tiny_blip2(blip2_dir)),
        "rank": build_tiny_clip(clip_rank_dir, CLIP_RANK),
        "embed": build_tiny_clip(clip_embed_dir, CLIP_EMBED),
    }
