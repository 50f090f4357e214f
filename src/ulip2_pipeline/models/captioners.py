"""One interface over the captioning models, the family chosen from the model's configuration, never its name.

Families:

- ``blip2-opt``: ``model_type`` ``blip-2`` whose language model is decoder-only
  (``use_decoder_only_language_model``; BLIP-2 OPT, the paper's captioner): ``blip2``.
- ``blip2-t5``: ``model_type`` ``blip-2`` whose language model is an encoder-decoder
  (BLIP-2 Flan-T5, Cap3D's captioner): ``blip2_t5``.

A checkpoint is loaded exactly as it is: transformers only warns about weights the
checkpoint lacks (left at random), has in excess or has in another shape; here any of
them refuses the model, naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ulip2_pipeline.models import blip2, blip2_t5, chat_vlm, instructblip
from ulip2_pipeline.models.blip2 import GenerationSettings, caption_dtype, end_tokens, vision_dtype


@dataclass(frozen=True)
class Family:
    """What the pipeline needs of a captioner family. ``matches`` reads a ``transformers.AutoConfig``;
    ``load(model_id, dtype)`` returns (model, processor) through ``load_exactly``; ``caption`` is the
    family's ``caption_batch(model, processor, images, seeds, settings)``; ``input_dtype`` the dtype its
    pixels go in; ``end_tokens`` the ids that end a caption."""

    matches: Callable[[Any], bool]
    describes: str
    load: Callable[[str, torch.dtype], tuple[Any, Any]]
    caption: Callable[..., list[list[str]]]
    input_dtype: Callable[[Any], torch.dtype]
    end_tokens: Callable[[Any], list[int]]
    # The text the model is really given: BLIP-2 continues ``prompt`` as is; instruction-following
    # families are asked their default instruction when ``prompt`` is empty.
    prompt: Callable[[GenerationSettings], str] = lambda settings: settings.prompt


def _load_blip2(model_id: str, dtype: torch.dtype):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    return load_exactly(Blip2ForConditionalGeneration, model_id, dtype), Blip2Processor.from_pretrained(model_id)


def _is_blip2(decoder_only: bool) -> Callable[[Any], bool]:
    return lambda config: config.model_type == "blip-2" and config.use_decoder_only_language_model == decoder_only


FAMILIES: dict[str, Family] = {
    "blip2-opt": Family(
        matches=_is_blip2(decoder_only=True),
        describes="model_type blip-2 with a decoder-only language model (BLIP-2 OPT)",
        load=_load_blip2,
        caption=blip2.caption_batch,
        input_dtype=vision_dtype,
        end_tokens=end_tokens,
    ),
    "blip2-t5": Family(
        matches=_is_blip2(decoder_only=False),
        describes="model_type blip-2 with an encoder-decoder language model (BLIP-2 Flan-T5)",
        load=_load_blip2,
        caption=blip2_t5.caption_batch,
        input_dtype=vision_dtype,
        end_tokens=end_tokens,
    ),
    "instructblip-vicuna": Family(
        matches=instructblip.matches(decoder_only=True),
        describes="model_type instructblip with a decoder-only language model (InstructBLIP Vicuna)",
        load=instructblip.load,
        caption=instructblip.caption_batch,
        input_dtype=vision_dtype,
        end_tokens=end_tokens,
        prompt=instructblip.instruction,
    ),
    "instructblip-t5": Family(
        matches=instructblip.matches(decoder_only=False),
        describes="model_type instructblip with an encoder-decoder language model (InstructBLIP Flan-T5)",
        load=instructblip.load,
        caption=instructblip.caption_batch,
        input_dtype=vision_dtype,
        end_tokens=end_tokens,
        prompt=instructblip.instruction,
    ),
    "chat-vlm": Family(
        matches=chat_vlm.matches,
        describes="model_type qwen2_5_vl, qwen2_vl or qwen3_vl (Qwen2.5-VL, Qwen2-VL, Qwen3-VL chat models)",
        load=chat_vlm.load,
        caption=chat_vlm.caption_batch,
        input_dtype=chat_vlm.vision_dtype,
        end_tokens=end_tokens,
        prompt=chat_vlm.instruction,
    ),
}
LOADING_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys")
KEYS_SHOWN = 5


def supported_families() -> str:
    return "; ".join(f"{name}: {family.describes}" for name, family in FAMILIES.items())


def family_of(config, model_id: str) -> str:
    """The captioner family of a loaded configuration (``transformers.AutoConfig``)."""
    model_type = getattr(config, "model_type", None)
    for name, family in FAMILIES.items():
        if family.matches(config):
            return name
    raise ValueError(
        f"{model_id}: model_type {model_type!r} is not a captioner this pipeline runs; "
        f"supported families: {supported_families()}"
    )


def captioner_family(model_id: str) -> str:
    """The family of the model at ``model_id`` (hub id or folder), read from its config.json alone."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id)
    except ValueError as error:  # a model_type transformers does not know
        raise ValueError(f"{model_id}: {error}\nsupported families: {supported_families()}") from error
    return family_of(config, model_id)


def check_loading_info(model_id: str, info: dict) -> None:
    """Refuse a checkpoint whose weights do not fit the architecture: missing, unexpected or mismatched keys."""
    problems = []
    for kind in LOADING_PROBLEMS:
        keys = sorted(key[0] if isinstance(key, tuple) else key for key in info.get(kind) or ())
        if keys:
            more = f", ... ({len(keys)} in all)" if len(keys) > KEYS_SHOWN else ""
            problems.append(f"{kind.replace('_', ' ')}: {', '.join(keys[:KEYS_SHOWN])}{more}")
    if problems:
        raise ValueError(
            f"{model_id}: its checkpoint does not fit the model its config describes ({'; '.join(problems)}); "
            "refusing to run with weights left at random"
        )


def load_exactly(model_class, model_id: str, dtype: torch.dtype):
    """``model_class.from_pretrained`` that refuses what transformers only warns about (``check_loading_info``).

    Weights tied by the model's own mapping (OPT's output embedding is its input embedding)
    are neither missing nor unexpected; mismatched shapes are reported, not raised, so that
    all three kinds are refused alike.
    """
    model, info = model_class.from_pretrained(
        model_id, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
    )
    check_loading_info(model_id, info)
    return model


@dataclass
class Captioner:
    family: str
    model_id: str
    model: Any
    processor: Any
    dtype: torch.dtype  # the vision tower's
    end_ids: list[int]

    def caption(self, images: list, seeds: list[int], settings: GenerationSettings) -> list[list[str]]:
        """``settings.num_captions`` captions per PIL image, image i's sampling seeded by ``seeds[i]``."""
        return FAMILIES[self.family].caption(self.model, self.processor, images, seeds, settings)

    def prompt(self, settings: GenerationSettings) -> str:
        """What the model is asked or continues, as the family uses ``settings.prompt``."""
        return FAMILIES[self.family].prompt(settings)


def load_captioner(model_id: str, device: torch.device, precision: str = "auto") -> Captioner:
    """The captioner at ``model_id`` (hub id or local folder) on ``device`` in ``caption_dtype(precision, device)``,
    its family chosen from its configuration."""
    name = captioner_family(model_id)
    family = FAMILIES[name]
    model, processor = family.load(model_id, caption_dtype(precision, device))
    model = model.to(device).eval()
    return Captioner(name, model_id, model, processor, family.input_dtype(model), family.end_tokens(model))
