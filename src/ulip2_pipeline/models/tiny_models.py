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


# --- InstructBLIP stand-ins (Salesforce/instructblip-vicuna-7b, Salesforce/instructblip-flan-t5-xl) ---
# The real configurations (real_models.instructblip_config) with sizes shrunk, the hub's processor files (the
# language tokenizer, the Q-Former's BERT tokenizer in qformer_tokenizer/, the image processor), random weights.
# Both get query embeddings that depend on the image (spread_vision_and_query_weights). The Vicuna stand-in gets a
# confident next-token distribution (as the OPT one) and a clock that ends its captions at </s> after about ten
# tokens (end_llama_captions_at_eos: LLaMA has rotary positions, no position table to bias); the Flan-T5 one gets its
# own output embedding and the BLIP-2 T5 stand-in's clock (end_captions_at_eos, its Q-Former asked the default
# instruction).


def write_instructblip_processor_files(out_dir: str | Path, language_model: str) -> Path:
    """preprocessor_config.json, processor_config.json, the language tokenizer's files and qformer_tokenizer/."""
    from ulip2_pipeline.models import bert_vocab, llama_vocab
    from ulip2_pipeline.models.real_models import INSTRUCTBLIP_PREPROCESSOR_CONFIG, INSTRUCTBLIP_PROCESSOR_CONFIG

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "preprocessor_config.json", INSTRUCTBLIP_PREPROCESSOR_CONFIG)
    _write_json(out_dir / "processor_config.json", INSTRUCTBLIP_PROCESSOR_CONFIG)
    if language_model == "vicuna":
        llama_vocab.write_tokenizer_files(out_dir)
    else:
        t5_vocab.write_tokenizer_files(out_dir)
        saved = json.loads((out_dir / "tokenizer_config.json").read_text())
        _write_json(out_dir / "tokenizer_config.json", {**saved, "truncation_side": "left"})  # as converted
    bert_vocab.write_tokenizer_files(out_dir / "qformer_tokenizer")
    return out_dir


def instructblip_processor(out_dir: str | Path, language_model: str):
    """The stand-in's ``InstructBlipProcessor``, written to ``out_dir`` and loaded back from it."""
    from transformers import InstructBlipProcessor

    return InstructBlipProcessor.from_pretrained(write_instructblip_processor_files(out_dir, language_model))


def spread_vision_and_query_weights(model) -> None:
    """Let a random InstructBLIP stand-in's query embeddings depend on the image, as a trained model's do.

    transformers 5.23 initializes the vision tower from the vision config's ``initializer_range``,
    1e-10 (the library default the hub config keeps; it never matters for a trained checkpoint),
    and the query tokens with zeros: every image would look alike (query embeddings about 1e-9
    apart) and the 32 queries would be one. Those are drawn at the model's ``initializer_range``
    (0.02); and the Q-Former's cross-attention values and outputs at 1 / sqrt(hidden), so that
    what it reads from the image weighs about as much as its residual stream (at 0.02 the image
    moves the queries by about 0.1 %). Only weights change.
    """
    std = model.config.initializer_range
    width = model.config.qformer_config.hidden_size
    with torch.no_grad():
        for module in model.vision_model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.normal_(0.0, std)
        embeddings = model.vision_model.embeddings
        embeddings.class_embedding.normal_(0.0, std)
        embeddings.position_embedding.normal_(0.0, std)
        model.query_tokens.normal_(0.0, std)
        for layer in model.qformer.encoder.layer:
            if hasattr(layer, "crossattention"):
                layer.crossattention.attention.value.weight.normal_(0.0, width**-0.5)
                layer.crossattention.output.dense.weight.normal_(0.0, width**-0.5)


def sharpen_llama_next_token_distribution(model, logit_std: float = LOGIT_STD) -> None:
    """Scale LLaMA's final RMSNorm gain so the random model's logits have about ``logit_std`` (as
    ``sharpen_next_token_distribution`` does for OPT): the normed state has unit scale per entry, the
    output embedding the init std ``initializer_range``."""
    text = model.config.text_config
    gain = logit_std / (text.initializer_range * text.hidden_size**0.5)
    with torch.no_grad():
        model.language_model.model.norm.weight.fill_(gain)


def _greedy_final_states(model, processor, steps: int, images: int = 8) -> torch.Tensor:
    """(steps, images, hidden): the final normed state at each greedy step of the caption loop on random pixels,
    asked the default instruction; no caption ends (min_new_tokens)."""
    from ulip2_pipeline.models import instructblip
    from ulip2_pipeline.models.blip2 import GenerationSettings

    size = model.config.vision_config.image_size
    pixels = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    settings = GenerationSettings(num_captions=1, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    states = []
    head = model.language_model.lm_head
    hook = head.register_forward_hook(lambda m, args, out: states.append(args[0][:, -1]))
    try:
        instructblip.caption_tokens(model, processor, pixels, list(range(images)), settings)
    finally:
        hook.remove()
    return torch.stack(states)


def _solve_end_weights(
    states, head_weights, coordinates, ends_from: int, ends_by: int, below: float
) -> tuple[float, float]:
    """(w_up, w_down) with up * w_up - down * w_down = the best other token's logit - ``below`` at ``ends_from``
    and + 0.5 at ``ends_by`` (means over the images), up and down the states' ``coordinates`` (constant, clock)."""
    others = (states @ head_weights.T).max(-1).values.mean(-1)
    constant, clock = coordinates
    up, down = states[:, :, constant].mean(-1), states[:, :, clock].mean(-1)
    system = torch.stack([torch.stack([up[ends_from], -down[ends_from]]), torch.stack([up[ends_by], -down[ends_by]])])
    target = torch.stack([others[ends_from] - below, others[ends_by] + 0.5])
    w_up, w_down = torch.linalg.solve(system.double(), target.double()).tolist()
    return w_up, w_down


def end_llama_captions_at_eos(
    model, processor, eos: int, ends_from: int = 5, ends_by: int = 10, below: float = 12.0, marker: float = 1.0
) -> None:
    """Make the random InstructBLIP Vicuna end its captions at ``eos`` (``</s>``) after about ten tokens.

    The T5 stand-in's clock (``end_captions_at_eos``) carried over to a decoder-only model with
    rotary positions, which has no position table to bias. Three coordinates of the hidden
    state are set aside: every token embedding carries a constant in one (of the embeddings'
    own scale); the image query embeddings, and nothing else, carry a marker in another (the
    language projection's bias), so 32 positions of every prefix are marked. One head of the
    first layer attends to every position alike (its query projection zeroed: rotary positions
    rotate a zero query to zero) and reads the marker, so it writes 32 / (position + 1) times the
    normed marker (times the embeddings' scale) into the third coordinate, the clock, which runs
    down as the caption grows; no
    other projection writes into the three. ``eos``'s output row reads the constant up and the
    clock down, and no other row reads them. The two weights are solved from the model's own
    greedy states (random pixels, the default instruction) so that ``eos`` is ``below`` under the
    best other token at step ``ends_from`` and just above it at step ``ends_by``: greedy captions
    end after 10 to 12 tokens, sampled ones after about 11 (with the default instruction: the
    clock counts the instruction's tokens too, so a shorter one ends later). The clock is written
    at the embeddings' scale: at the marker's, it would dominate the final norm and flatten the
    logits. Only weights change.
    """
    text = model.config.text_config
    language_model = model.language_model
    layers = language_model.model.layers
    d = text.hidden_size
    constant, marker_at, clock = (d + i for i in (_CONSTANT, _MARKER, _CLOCK))
    reserved = [constant, marker_at, clock]
    attention = layers[0].self_attn
    head = attention.head_dim  # head 0's rows / columns: [0, head)
    with torch.no_grad():
        embeddings = language_model.get_input_embeddings().weight
        scale = float(embeddings.std())
        embeddings[:, reserved] = 0.0
        embeddings[:, constant] = scale
        projection = model.language_projection
        projection.weight[reserved] = 0.0
        projection.bias[reserved] = 0.0
        projection.bias[marker_at] = marker
        for layer in layers:
            layer.self_attn.o_proj.weight[reserved, :] = 0.0
            layer.mlp.down_proj.weight[reserved, :] = 0.0
        attention.q_proj.weight[:head] = 0.0
        attention.v_proj.weight[:head] = 0.0
        attention.v_proj.weight[0, marker_at] = 1.0
        attention.o_proj.weight[:, :head] = 0.0
        attention.o_proj.weight[clock, 0] = scale  # a clock of the residual stream's scale, not its norm
        head_weights = language_model.lm_head.weight
        head_weights[:, reserved] = 0.0
        head_weights[eos] = 0.0
        states = _greedy_final_states(model, processor, ends_by + 1)
        w_up, w_down = _solve_end_weights(states, head_weights, (constant, clock), ends_from, ends_by, below)
        head_weights[eos, constant] = w_up
        head_weights[eos, clock] = -w_down


class _Asked:
    """``model`` whose ``get_image_features(pixel_values=...)`` asks ``qformer_ids`` (InstructBLIP's Q-Former reads
    the instruction), so code written for BLIP-2 runs on it unchanged."""

    def __init__(self, model, qformer_ids: torch.Tensor):
        self._model, self._ids = model, qformer_ids

    def __getattr__(self, name):
        return getattr(self._model, name)

    def get_image_features(self, pixel_values, **kwargs):
        ids = self._ids.expand(len(pixel_values), -1)
        return self._model.get_image_features(pixel_values=pixel_values, qformer_input_ids=ids, **kwargs)


def build_instructblip(out_dir: str | Path, language_model: str, sizes: Document | None = None, seed: int = 0) -> Path:
    """Save an InstructBlipForConditionalGeneration of the real config (``language_model`` "vicuna" or "t5",
    ``sizes`` shrunk) with the hub's other files."""
    from transformers import GenerationConfig, InstructBlipConfig, InstructBlipForConditionalGeneration

    from ulip2_pipeline.models.instructblip import DEFAULT_INSTRUCTION
    from ulip2_pipeline.models.real_models import (
        INSTRUCTBLIP_T5_GENERATION_CONFIG,
        INSTRUCTBLIP_VICUNA_GENERATION_CONFIG,
        instructblip_config,
    )

    out_dir = Path(out_dir)
    vicuna = language_model == "vicuna"
    generation = INSTRUCTBLIP_VICUNA_GENERATION_CONFIG if vicuna else INSTRUCTBLIP_T5_GENERATION_CONFIG
    real = instructblip_config(language_model)
    torch.manual_seed(seed)
    config = InstructBlipConfig.from_dict(instructblip_config(language_model, sizes))
    model = InstructBlipForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(**generation)
    processor = instructblip_processor(out_dir, language_model)
    spread_vision_and_query_weights(model)
    if vicuna:
        sharpen_llama_next_token_distribution(model)
        end_llama_captions_at_eos(model, processor, generation["eos_token_id"])
    else:
        untie_output_embedding(model)
        ids = torch.tensor([processor.qformer_tokenizer(DEFAULT_INSTRUCTION)["input_ids"]])
        end_captions_at_eos(_Asked(model, ids))
    model.save_pretrained(out_dir)
    saved = json.loads((out_dir / "config.json").read_text())
    if not vicuna:  # as build_blip2_t5: transformers 5.23 rewrites these T5 keys; the hub file has the real ones
        saved["text_config"].update(
            {key: real["text_config"][key] for key in ("tie_word_embeddings", "is_encoder_decoder")}
        )
        saved["text_config"].pop("scale_decoder_outputs", None)
    _write_json(out_dir / "config.json", saved)
    _write_json(out_dir / "generation_config.json", generation)
    return out_dir


def build_tiny_instructblip_vicuna(out_dir: str | Path, seed: int = 0) -> Path:
    from ulip2_pipeline.models.real_models import INSTRUCTBLIP_VICUNA_TINY_SIZES

    return build_instructblip(out_dir, "vicuna", INSTRUCTBLIP_VICUNA_TINY_SIZES, seed)


def build_tiny_instructblip_t5(out_dir: str | Path, seed: int = 0) -> Path:
    from ulip2_pipeline.models.real_models import INSTRUCTBLIP_T5_TINY_SIZES

    return build_instructblip(out_dir, "t5", INSTRUCTBLIP_T5_TINY_SIZES, seed)


# --- Qwen2.5-VL (the chat-vlm family): the stand-in of Qwen/Qwen2.5-VL-7B-Instruct ---
# Kept: the special-token ids (<|im_end|> 151645 and <|endoftext|> 151643 end captions, <|image_pad|> 151655, ...),
# the 152064-row vocabulary and its own output embedding, M-RoPE (mrope_section scaled with the head dim), the
# vision tower's patch 14 / temporal patch 2 / 2 x 2 merge / window 112 / full attention in the last block of each
# group, the image processor (dynamic resolution, CLIP mean/std; max_pixels shrunk), the Qwen2 tokenizer's layout,
# the chat template and the generation config. Like the BLIP-2 stand-ins, its weights are random and three choices
# of them make it caption like a trained model where the pipeline can tell: captions that change with the image
# (look_at_the_image), a confident next-token distribution and captions that end at <|im_end|> after about ten
# tokens (end_qwen_captions_at_im_end).

# Four coordinates of the Qwen stand-in's hidden state are given a meaning (see look_at_the_image and
# end_qwen_captions_at_im_end); no layer writes into them.
_QWEN_CONSTANT, _QWEN_MARKER, _QWEN_CLOCK, _QWEN_IMAGE = -1, -2, -3, -4


def write_qwen2_5_vl_processor_files(out_dir: str | Path, sizes: Document | None = None) -> Path:
    """The processor's files as the hub repo has them: preprocessor_config.json (``sizes``' max_pixels),
    chat_template.json and the Qwen2 tokenizer files (with the chat template in tokenizer_config.json too)."""
    from ulip2_pipeline.models.qwen_vocab import write_qwen2_tokenizer_files
    from ulip2_pipeline.models.real_models import QWEN2_5_VL_CHAT_TEMPLATE, qwen2_5_vl_preprocessor_config

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "preprocessor_config.json", qwen2_5_vl_preprocessor_config(sizes))
    _write_json(out_dir / "chat_template.json", {"chat_template": QWEN2_5_VL_CHAT_TEMPLATE})
    write_qwen2_tokenizer_files(out_dir, QWEN2_5_VL_CHAT_TEMPLATE)
    return out_dir


def sharpen_qwen_next_token_distribution(model, logit_std: float = LOGIT_STD) -> None:
    """Scale the final RMSNorm's gain so a freshly initialised Qwen2.5-VL's logits have about ``logit_std`` (as
    ``sharpen_next_token_distribution`` does for OPT): they are the normed state (unit variance per entry) times
    ``lm_head`` (init std ``initializer_range``), so their std is gain * initializer_range * sqrt(hidden). For the
    real-size benchmark; the stand-in measures the spread of its own logits instead (end_qwen_captions_at_im_end)."""
    text = model.config.text_config
    gain = logit_std / (text.initializer_range * text.hidden_size**0.5)
    with torch.no_grad():
        model.model.language_model.norm.weight.fill_(gain)


def _qwen_reserved(model) -> dict[str, int]:
    d = model.config.text_config.hidden_size
    return {
        "constant": d + _QWEN_CONSTANT,
        "marker": d + _QWEN_MARKER,
        "clock": d + _QWEN_CLOCK,
        "image": d + _QWEN_IMAGE,
    }


def reserve_qwen_coordinates(model) -> None:
    """Clear the reserved coordinates: no token embedding, image feature, attention or MLP output writes into them,
    and no output row reads them."""
    language_model = model.model.language_model
    reserved = list(_qwen_reserved(model).values())
    with torch.no_grad():
        language_model.embed_tokens.weight[:, reserved] = 0.0
        merger_out = model.model.visual.merger.mlp[-1]
        merger_out.weight[reserved] = 0.0
        merger_out.bias[reserved] = 0.0
        for layer in language_model.layers:
            layer.self_attn.o_proj.weight[reserved] = 0.0
            layer.mlp.down_proj.weight[reserved] = 0.0
        model.lm_head.weight[:, reserved] = 0.0


def _head_rows(head: int, head_dim: int) -> slice:
    return slice(head * head_dim, (head + 1) * head_dim)


def look_at_the_image(model, marker: float = 0.4, score: float = 20.0, gain: float = 10.0) -> None:
    """Make the random language model's text depend on the image, as a captioner's does.

    A random model's attention spreads over the whole prompt, of which the few image tokens are
    a small part, so its captions hardly change with the image. The image features carry a marker
    in a reserved coordinate (the merger's bias); key/value head 1 of the first layer keys on it
    alone, on the slowest rotary frequency (no turn over a prompt), and query head 2 (of its group)
    has a constant query (its bias): the head attends to the image tokens only, about ``score``
    nats above any other token, and writes their values (which do not read the marker) into every
    position, its output projection ``gain`` times its random one. Only weights change.
    """
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    image = _qwen_reserved(model)["image"]
    attention = model.model.language_model.layers[0].self_attn
    slowest = head_dim // 2 - 1
    with torch.no_grad():
        model.model.visual.merger.mlp[-1].bias[image] = marker
        kv, query = _head_rows(1, head_dim), _head_rows(2, head_dim)
        attention.k_proj.weight[kv] = 0.0
        attention.k_proj.bias[kv] = 0.0
        attention.k_proj.weight[kv.start + slowest, image] = 1.0
        attention.v_proj.weight[kv, image] = 0.0
        attention.q_proj.weight[query] = 0.0
        attention.q_proj.bias[query] = 0.0
        # the marker after the layer's RMSNorm is about marker / rms(feature + marker), ~ 5.7 for the stand-in
        normed = marker / ((marker**2 + 0.4**2) / text.hidden_size) ** 0.5
        attention.q_proj.bias[query.start + slowest] = score * head_dim**0.5 / normed
        attention.o_proj.weight[:, query] *= gain


def _calibration_images(size: int, rng) -> list:
    """Noise, a solid colour and, like a rendered view, a coloured square on white: two of each, ``size`` px."""
    from PIL import Image

    images = []
    for _ in range(2):
        images.append(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype="uint8")))
        images.append(Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3))))
        view = Image.new("RGB", (size, size), (255, 255, 255))
        x, y = (int(v) for v in rng.integers(0, size // 2, 2))
        view.paste(tuple(int(c) for c in rng.integers(0, 256, 3)), (x, y, x + size // 2, y + size // 2))
        images.append(view)
    return images


def _qwen_calibration_states(model, processor, steps: int) -> torch.Tensor:
    """(steps, images, hidden): the input of ``lm_head`` at each greedy step of the caption loop, on images of the
    two sizes the tests and the demo render (64 px) and the paper's views have (224 px)."""
    import numpy as np

    from ulip2_pipeline.models import chat_vlm
    from ulip2_pipeline.models.blip2 import GenerationSettings

    rng = np.random.default_rng(0)
    settings = GenerationSettings(num_captions=1, max_new_tokens=steps, do_sample=False)
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")  # never picked: its output row is 0
    states = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: states.append(args[0][:, -1]))
    try:
        per_size = []
        for size in (64, 224):
            images = _calibration_images(size, rng)
            states.clear()
            inputs = chat_vlm.prefix_inputs(model, processor, images, chat_vlm.DEFAULT_INSTRUCTION)
            chat_vlm.sample_caption_tokens(model, inputs, [0] * len(images), settings, [end], 0)
            per_size.append(torch.stack(states))
    finally:
        hook.remove()
    return torch.cat(per_size, dim=1)


def end_qwen_captions_at_im_end(
    model,
    processor,
    silent_until: int = 6,
    ends_by: int = 10,
    margin: float = 8.0,
    width: float = 5.0,
    marker: float = 0.1,
    clock_scale: float = 0.1,
    logit_std: float = LOGIT_STD,
) -> None:
    """Make the random Qwen2.5-VL confident and end its captions at ``<|im_end|>`` after about ten tokens, as a
    trained captioner does.

    The language model has no position embeddings, only RoPE in attention; its clock must count
    the tokens since the assistant's turn began, whatever the length of the prompt before it
    (the number of image tokens changes with the image size). Three reserved coordinates of the
    hidden state (``reserve_qwen_coordinates``) serve: the input embeddings carry a constant in
    one (every token) and a marker in another (only ``<|im_start|>``, which opens the assistant's
    turn two tokens before the first generated one). Query head 0 of the first layer has constant
    query and key vectors (biases only) on one rotary frequency ``w``, so its score of a key ``d``
    tokens back is ``A cos(w d)``, the same for every token: it attends to the last ``width`` or
    so tokens and reads the marker, writing into the third coordinate, the clock, a value that
    falls from the turn's start about as ``exp(-(d / width)^2 / 2)``. Then, from the model's own
    states (greedy, ``_calibration_images`` of 64 and 224 px, the default instruction): the final norm's
    gain is set so that the logits have about ``logit_std`` (freshly initialised weights spread
    their mass over all 152k tokens; a std of 6 leaves a top-p 0.9 set of a few dozen), and
    ``<|im_end|>``'s output row reads the constant up and the clock down. Both coordinates are the
    same for every image (nothing else writes them), so the difference crosses zero at step
    ``silent_until`` whatever the image; only its scale, through the final norm, varies with the
    image. Its two weights put ``<|im_end|>``'s logit at 0 (far below the best other token, about
    25) at ``silent_until`` and ``margin`` above the best other token, on average, at ``ends_by``.
    Only weights change. The frequency's period (about 200 tokens for the stand-in) bounds prompt +
    caption lengths.
    """
    text = model.config.text_config
    language_model = model.model.language_model
    head_dim = text.hidden_size // text.num_attention_heads
    coordinates = _qwen_reserved(model)
    constant, marker_at, clock = coordinates["constant"], coordinates["marker"], coordinates["clock"]
    im_start = processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    inv_freq = language_model.rotary_emb.inv_freq
    pair = int((inv_freq < 2 * torch.pi / 150).nonzero()[0])  # the fastest frequency with a period over 150 tokens
    amplitude = 1.0 / (float(inv_freq[pair]) ** 2 * width**2)  # A cos(w d) ~ A - d^2 / (2 width^2)
    side = (amplitude * head_dim**0.5) ** 0.5  # q . k * head_dim^-0.5 = A
    attention = language_model.layers[0].self_attn
    with torch.no_grad():
        embeddings = language_model.embed_tokens.weight
        embeddings[:, constant] = 3 * text.initializer_range
        embeddings[im_start, marker_at] = marker
        attention.q_proj.weight[:head_dim] = 0.0  # query head 0 ...
        attention.q_proj.bias[:head_dim] = 0.0
        attention.q_proj.bias[pair] = side
        attention.k_proj.weight[:head_dim] = 0.0  # ... and key/value head 0 (shared with the other heads of its group)
        attention.k_proj.bias[:head_dim] = 0.0
        attention.k_proj.bias[pair] = side
        attention.v_proj.weight[:head_dim] = 0.0
        attention.v_proj.bias[:head_dim] = 0.0
        attention.v_proj.weight[0, marker_at] = 1.0
        attention.o_proj.weight[:, :head_dim] = 0.0
        attention.o_proj.weight[clock, 0] = clock_scale
        head_weights = model.lm_head.weight
        head_weights[im_end] = 0.0  # <|im_end|> is never picked while calibrating
        states = _qwen_calibration_states(model, processor, ends_by + 1)
        scale = logit_std / float((states @ head_weights.T).std())  # the greedy path does not change with it
        language_model.norm.weight *= scale
        states *= scale
        others = (states @ head_weights.T).max(-1).values.mean(-1)  # best other token's logit per step
        up, down = states[:, :, constant].mean(-1), states[:, :, clock].mean(-1)
        # up * w_up - down * w_down = 0 at silent_until, best other + margin at ends_by
        system = torch.stack(
            [torch.stack([up[silent_until], -down[silent_until]]), torch.stack([up[ends_by], -down[ends_by]])]
        )
        target = torch.stack([torch.zeros(()), others[ends_by] + margin])
        w_up, w_down = torch.linalg.solve(system.double(), target.double()).tolist()
        head_weights[im_end, constant] = w_up
        head_weights[im_end, clock] = -w_down


def build_qwen2_5_vl(out_dir: str | Path, sizes: Document | None = None, seed: int = 0) -> Path:
    """Save a Qwen2.5-VL of the real config (``sizes`` shrunk) with the hub's other files."""
    import copy

    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ulip2_pipeline.models.real_models import QWEN2_5_VL_GENERATION_CONFIG, qwen2_5_vl_config

    out_dir = Path(out_dir)
    write_qwen2_5_vl_processor_files(out_dir, sizes)
    processor = AutoProcessor.from_pretrained(out_dir)
    config = qwen2_5_vl_config(sizes)
    torch.manual_seed(seed)
    # the hub file's torch_dtype (bfloat16) builds the language model in it; the stand-in is built and saved in fp32
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_dict(copy.deepcopy(config))).float().eval()
    reserve_qwen_coordinates(model)
    look_at_the_image(model)
    end_qwen_captions_at_im_end(model, processor)  # last: it calibrates on the model's own states
    model.save_pretrained(out_dir)
    # transformers 5.23 writes its own layout (text_config, rope_parameters); the hub file is flat, with the legacy
    # names, and loads to the same model. (from_dict fills rope_theta and rope_type into the rope_scaling dict it is
    # given: it was given a copy.)
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", QWEN2_5_VL_GENERATION_CONFIG)
    return out_dir


def build_tiny_qwen2_5_vl(out_dir: str | Path, seed: int = 0) -> Path:
    from ulip2_pipeline.models.real_models import QWEN2_5_VL_TINY_SIZES

    return build_qwen2_5_vl(out_dir, QWEN2_5_VL_TINY_SIZES, seed)


# --- Qwen2.5-7B-Instruct (the fuse stage's LLM): the stand-in of Qwen/Qwen2.5-7B-Instruct ---
# Kept: Qwen2ForCausalLM, the special-token ids (<|im_end|> 151645 and <|endoftext|> 151643 end an answer, pad
# 151643), the 152064-row vocabulary and its own output embedding, grouped KV heads, RoPE (theta 1e6), the Qwen2
# tokenizer's layout with Qwen2.5-Instruct's chat template, the hub's config.json (flat) and generation_config.json.
# Random weights; the choices below make it answer like a trained model where the pipeline can tell: an answer of
# short noise words from a confident distribution, ended at <|im_end|> after about ten to fifteen tokens, however
# long the prompt (twelve views' captions are hundreds of tokens).

# Four coordinates of the fuse stand-in's hidden state are given a meaning (see end_fuse_answers_at_im_end).
_FUSE_TURN, _FUSE_ANSWER, _FUSE_CLOCK, _FUSE_UP = -1, -2, -3, -4
_CONSONANTS = "bcdfghjklmnpqrstvwxz"


def fuse_answer_tokens(tokenizer) -> list[int]:
    """The stand-in's answer words: `` xkq``-like pieces (a space, three consonants, one of them j, q, x or z),
    which no English caption or instruction holds, so the model can tell its own answer from its prompt."""
    space = "\u0120"  # "Ġ": the byte-level BPE's space
    ids = sorted(
        index
        for piece, index in tokenizer.get_vocab().items()
        if len(piece) == 4
        and piece[0] == space
        and all(c in _CONSONANTS for c in piece[1:])
        and any(c in "jqxz" for c in piece[1:])
    )
    if not ids:
        raise ValueError("the tokenizer has no answer pieces for the fuse stand-in")
    return ids


def _fuse_calibration_prompts(tokenizer, count: int = 6) -> list[list[int]]:
    """Chat prompts as the fuse stage writes them: the default system message and instruction over 1 to 12
    captions of caption words (seeded)."""
    import random

    from ulip2_pipeline.models.fuse_llm import DEFAULT_INSTRUCTION, DEFAULT_SYSTEM, chat_prompt

    words = "a an the red blue green small large wooden metal chair table lamp mug bottle ball model of with".split()
    rng = random.Random(0)
    prompts = []
    for i in range(count):
        views = 1 + (11 * i) // max(1, count - 1)
        captions = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(views)]
        text = chat_prompt(tokenizer, DEFAULT_SYSTEM, DEFAULT_INSTRUCTION, captions)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


def _fuse_greedy_states(model, prompts: list[list[int]], steps: int, allowed: torch.Tensor) -> torch.Tensor:
    """(steps, prompts, hidden): the input of ``lm_head`` at each greedy step, picking among ``allowed`` only."""
    states = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: states.append(args[0][:, -1]))
    per_prompt = []
    try:
        with torch.inference_mode():
            for prompt in prompts:
                states.clear()
                ids = torch.tensor([prompt])
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                for _ in range(steps - 1):
                    token = allowed[out.logits[0, -1, allowed].argmax()].view(1, 1)
                    out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
                per_prompt.append(torch.cat(states, dim=0))  # (steps, hidden)
    finally:
        hook.remove()
    return torch.stack(per_prompt, dim=1)


def end_fuse_answers_at_im_end(
    model, tokenizer, ends_from: int = 6, ends_by: int = 12, marker: float = 0.1, logit_std: float = LOGIT_STD
) -> None:
    """Make the random Qwen2 answer in noise words and end at ``<|im_end|>`` after about ten tokens.

    RoPE gives a decoder no position of its own, and the fuse prompt is long and of any length,
    so the clock counts the answer's own tokens: the model answers only in pieces no prompt holds
    (``fuse_answer_tokens``: every other output row reads a large negative constant). Four
    coordinates of the hidden state are set aside. The input embeddings mark ``<|im_start|>`` in
    one (the chat template opens three turns: system, user, assistant) and the answer pieces in
    another, the marked rows all of one norm. Query head 0 of the first layer has a constant query
    and a key on the two markers alone, on RoPE's slowest frequency (a rotation of under 0.02 rad
    over 3000 tokens), so it attends to the marked tokens alike and to nothing else; it writes the
    share of ``<|im_start|>`` among them, 3 / (3 + tokens answered), into the clock and their total
    weight, 1, into the constant up. No other projection reads or writes the four. The final norm's
    gain on the others is set so that the answer pieces' logits have about ``logit_std``;
    ``<|im_end|>``'s output row reads the constant up and the clock down, its two weights solved
    from the model's own greedy states (the fuse prompt over 1 to 12 captions) so that it is far
    below the best answer piece at step ``ends_from`` and just above it at step ``ends_by``. Only
    weights change.
    """
    config = model.config
    d, head_dim = config.hidden_size, config.hidden_size // config.num_attention_heads
    turn, answer, clock, up = (d + i for i in (_FUSE_TURN, _FUSE_ANSWER, _FUSE_CLOCK, _FUSE_UP))
    reserved = [turn, answer, clock, up]
    content = [i for i in range(d) if i not in reserved]
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pieces = torch.tensor(fuse_answer_tokens(tokenizer))
    slowest = head_dim // 2 - 1  # rotate_half pairs (i, i + head_dim / 2); inv_freq falls with i
    layers = model.model.layers
    attention = layers[0].self_attn
    with torch.no_grad():
        embeddings = model.model.embed_tokens.weight
        embeddings[:, reserved] = 0.0
        marked = torch.cat([pieces, torch.tensor([im_start])])
        norm = float(embeddings[marked][:, content].norm(dim=-1).mean())
        rows = embeddings[marked][:, content]
        embeddings[marked.unsqueeze(1), torch.tensor(content)] = rows * (norm / rows.norm(dim=-1, keepdim=True))
        embeddings[im_start, turn] = marker
        embeddings[pieces, answer] = marker
        normed_marker = marker / ((marker**2 + norm**2) / d) ** 0.5  # what input_layernorm (gain 1) makes of it
        for layer in layers:
            for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                projection.weight[:, reserved] = 0.0
            layer.mlp.gate_proj.weight[:, reserved] = 0.0
            layer.mlp.up_proj.weight[:, reserved] = 0.0
            layer.self_attn.o_proj.weight[reserved] = 0.0
            layer.mlp.down_proj.weight[reserved] = 0.0
        side = (30.0 * head_dim**0.5) ** 0.5  # score q . k / sqrt(head_dim) = 30 on a marked key, 0 elsewhere
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj):  # query head 0, key/value head 0
            projection.weight[:head_dim] = 0.0
            projection.bias[:head_dim] = 0.0
        attention.q_proj.bias[slowest] = side
        attention.k_proj.weight[slowest, [turn, answer]] = side / normed_marker
        attention.v_proj.weight[0, turn] = 1.0 / normed_marker
        attention.v_proj.weight[1, [turn, answer]] = 1.0 / normed_marker
        attention.o_proj.weight[:, :head_dim] = 0.0
        attention.o_proj.weight[clock, 0] = 1.0
        attention.o_proj.weight[up, 1] = 1.0
        head_weights = model.lm_head.weight
        head_weights[:, reserved] = 0.0
        head_weights[im_end] = 0.0
        prompts = _fuse_calibration_prompts(tokenizer)
        states = _fuse_greedy_states(model, prompts, ends_by + 1, pieces)
        spread = float((states[..., content] @ head_weights[pieces][:, content].T).std())
        model.model.norm.weight[content] *= logit_std / spread
        states[..., content] *= logit_std / spread
        lowest_up = float(states[..., up].min())
        others = torch.ones(head_weights.shape[0], dtype=torch.bool)
        others[pieces] = False
        others[im_end] = False
        head_weights[others, up] = -100.0 / lowest_up  # every other token 100 below where the up coordinate is
        best = (states[..., content] @ head_weights[pieces][:, content].T).max(-1).values.mean(-1)
        ups, downs = states[..., up].mean(-1), states[..., clock].mean(-1)
        system = torch.stack(
            [torch.stack([ups[ends_from], -downs[ends_from]]), torch.stack([ups[ends_by], -downs[ends_by]])]
        )
        target = torch.stack([best[ends_from] - 12.0, best[ends_by] + 0.5])
        w_up, w_down = torch.linalg.solve(system.double(), target.double()).tolist()
        head_weights[im_end, up] = w_up
        head_weights[im_end, clock] = -w_down


def build_qwen2_instruct(out_dir: str | Path, sizes: Document | None = None, seed: int = 0) -> Path:
    """Save a Qwen2ForCausalLM of Qwen2.5-7B-Instruct's config (``sizes`` shrunk) with its tokenizer (Qwen2.5-Instruct's
    chat template) and generation config, as the hub repo has them."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from ulip2_pipeline.models.qwen_vocab import write_qwen2_tokenizer_files
    from ulip2_pipeline.models.real_models import (
        QWEN2_5_INSTRUCT_CHAT_TEMPLATE,
        QWEN2_5_INSTRUCT_GENERATION_CONFIG,
        qwen2_5_instruct_config,
    )

    out_dir = Path(out_dir)
    write_qwen2_tokenizer_files(out_dir, QWEN2_5_INSTRUCT_CHAT_TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    config = qwen2_5_instruct_config(sizes)
    torch.manual_seed(seed)
    # the hub file's torch_dtype (bfloat16) would build the model in it; the stand-in is built and saved in fp32
    model = Qwen2ForCausalLM(Qwen2Config.from_dict(config)).float().eval()
    end_fuse_answers_at_im_end(model, tokenizer)
    model.save_pretrained(out_dir)
    # transformers 5.23 writes its own layout (rope_parameters, layer_types); the hub file loads to the same model.
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", QWEN2_5_INSTRUCT_GENERATION_CONFIG)
    return out_dir


def build_tiny_qwen2_instruct(out_dir: str | Path, seed: int = 0) -> Path:
    from ulip2_pipeline.models.real_models import QWEN2_5_INSTRUCT_TINY_SIZES

    return build_qwen2_instruct(out_dir, QWEN2_5_INSTRUCT_TINY_SIZES, seed)
