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
the newline after about ten tokens. The BLIP-2 Flan-T5 stand-in (Cap3D's captioner,
``build_tiny_blip2_t5``) keeps ``Salesforce/blip2-flan-t5-xl``'s contract the same way
(its own output embedding, ``</s>`` 1 ending captions, decoding from the pad token 0,
``<image>`` 32100, T5's tokenizer layout), and its captions end at ``</s>`` after about
ten tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulip2_pipeline.models import t5_vocab
from ulip2_pipeline.models.opt_vocab import write_tokenizer_files
from ulip2_pipeline.models.real_models import (
    BLIP2_GENERATION_CONFIG,
    BLIP2_PREPROCESSOR_CONFIG,
    BLIP2_PROCESSOR_CONFIG,
    BLIP2_T5_GENERATION_CONFIG,
    BLIP2_T5_PREPROCESSOR_CONFIG,
    BLIP2_T5_PROCESSOR_CONFIG,
    BLIP2_T5_TINY_SIZES,
    BLIP2_TINY_SIZES,
    CLIP_EMBED,
    CLIP_RANK,
    CLIP_TINY_SIZES,
    blip2_config,
    blip2_t5_config,
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


def untie_output_embedding(model) -> None:
    """Give the T5 its own output embedding, as Flan-T5 (T5 v1.1) has: transformers 5.23 builds every T5 with
    ``lm_head`` tied to the input embeddings (and unties it only when a checkpoint holds its own)."""
    language_model = model.language_model
    factor = model.config.text_config.initializer_factor
    with torch.no_grad():
        own = torch.randn_like(language_model.shared.weight) * factor  # T5's init of an untied lm_head
    language_model.lm_head.weight = torch.nn.Parameter(own)
    model.all_tied_weights_keys.pop("language_model.lm_head.weight", None)


# Three coordinates of the T5 stand-in's hidden state are given a meaning (see end_captions_at_eos).
_CONSTANT, _MARKER, _CLOCK = -1, -2, -3


def _decoder_writers(decoder):
    """Every projection that writes into the decoder's hidden state."""
    for block in decoder.block:
        for layer in block.layer:
            attention = getattr(layer, "SelfAttention", None) or getattr(layer, "EncDecAttention", None)
            yield attention.o if attention is not None else layer.DenseReluDense.wo


def _calibration_states(model, steps: int, images: int = 8) -> torch.Tensor:
    """(steps, images, d_model): the final normed decoder state at each greedy step on random pixels."""
    language_model = model.language_model
    size = model.config.vision_config.image_size
    pixels = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    eos = model.config.text_config.eos_token_id
    states = []
    hook = language_model.lm_head.register_forward_hook(lambda m, args, out: states.append(args[0][:, -1]))
    with torch.inference_mode():
        queries = model.get_image_features(pixel_values=pixels).pooler_output
        end = language_model.get_input_embeddings()(torch.tensor([eos]))
        prefix = torch.cat([queries, end.unsqueeze(0).expand(images, -1, -1)], dim=1)
        encoded = language_model.get_encoder()(inputs_embeds=prefix).last_hidden_state
        token = torch.full((images, 1), model.config.text_config.decoder_start_token_id)
        cache = None
        for _ in range(steps):
            out = language_model(
                encoder_outputs=(encoded,), decoder_input_ids=token, past_key_values=cache, use_cache=True
            )
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    hook.remove()
    return torch.stack(states)


def end_captions_at_eos(model, ends_from: int = 5, ends_by: int = 10, marker: float = 8.0) -> None:
    """Make the random T5 end its captions at ``</s>`` after about ten tokens, as a trained captioner does.

    A T5 decoder has no position embeddings; the only clock it has is attention. Three
    coordinates of the hidden state are set aside: the input embeddings carry a constant
    in one (every token) and a marker in another (only the decoder start token); one
    self-attention head of the first decoder layer attends to every position alike (no
    query, no position bias) and reads the marker, so it writes 1 / (step + 1) times the
    marker into the third coordinate, the clock; no other projection writes into the
    three. ``</s>``'s output row reads the constant up and the clock down, and nothing
    else reads them, so ``</s>`` gains on the other tokens as the clock runs down. The two
    weights are solved from the model's own hidden states (greedy, random pixels) so that
    ``</s>`` is far below the best other token at step ``ends_from`` and just above it at
    step ``ends_by``. Only weights change.
    """
    text = model.config.text_config
    language_model = model.language_model
    decoder = language_model.decoder
    d = text.d_model
    constant, marker_at, clock = (d + i for i in (_CONSTANT, _MARKER, _CLOCK))
    reserved = [constant, marker_at, clock]
    attention = decoder.block[0].layer[0].SelfAttention
    head = attention.key_value_proj_dim  # head 0's rows/columns: [0, head)
    with torch.no_grad():
        embeddings = language_model.shared.weight
        embeddings[:, reserved] = 0.0
        embeddings[:, constant] = 1.0
        embeddings[text.decoder_start_token_id, marker_at] = marker
        for projection in _decoder_writers(decoder):
            projection.weight[reserved, :] = 0.0
        attention.q.weight[:head] = 0.0
        attention.relative_attention_bias.weight[:, 0] = 0.0
        attention.v.weight[:head] = 0.0
        attention.v.weight[0, marker_at] = 1.0
        attention.o.weight[:, :head] = 0.0
        attention.o.weight[clock, 0] = 1.0
        head_weights = language_model.lm_head.weight
        head_weights[:, reserved] = 0.0
        head_weights[text.eos_token_id] = 0.0  # </s> is never picked while calibrating
        states = _calibration_states(model, ends_by + 1)
        others = (states @ head_weights.T).max(-1).values.mean(-1)  # best other token's logit per step
        up, down = states[:, :, constant].mean(-1), states[:, :, clock].mean(-1)
        # up * w_up - down * w_down = best other - 12 at ends_from, + 0.5 at ends_by
        system = torch.stack(
            [torch.stack([up[ends_from], -down[ends_from]]), torch.stack([up[ends_by], -down[ends_by]])]
        )
        target = torch.stack([others[ends_from] - 12.0, others[ends_by] + 0.5])
        w_up, w_down = torch.linalg.solve(system.double(), target.double()).tolist()
        head_weights[text.eos_token_id, constant] = w_up
        head_weights[text.eos_token_id, clock] = -w_down


def build_blip2_t5(out_dir: str | Path, sizes: Document | None = BLIP2_T5_TINY_SIZES, seed: int = 0) -> Path:
    """Save a BLIP-2 Flan-T5 of the real config (``sizes`` shrunk) with the hub's other files."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(Blip2Config.from_dict(blip2_t5_config(sizes))).eval()
    untie_output_embedding(model)
    end_captions_at_eos(model)
    model.save_pretrained(out_dir)
    # transformers 5.23 writes the T5's tie_word_embeddings back as true (its T5Config forces it), adds its derived
    # scale_decoder_outputs and leaves out is_encoder_decoder; the hub file has false, no such key, and true.
    # Loading reads either the same way (no rescaling; lm_head kept apart because the checkpoint holds its own).
    config = json.loads((out_dir / "config.json").read_text())
    real_text = blip2_t5_config()["text_config"]
    config["text_config"].update({key: real_text[key] for key in ("tie_word_embeddings", "is_encoder_decoder")})
    config["text_config"].pop("scale_decoder_outputs", None)
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", BLIP2_T5_GENERATION_CONFIG)
    _write_json(out_dir / "preprocessor_config.json", BLIP2_T5_PREPROCESSOR_CONFIG)
    _write_json(out_dir / "processor_config.json", BLIP2_T5_PROCESSOR_CONFIG)
    t5_vocab.write_tokenizer_files(out_dir)
    return out_dir


def build_tiny_blip2_t5(out_dir: str | Path, seed: int = 0) -> Path:
    return build_blip2_t5(out_dir, BLIP2_T5_TINY_SIZES, seed)


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
