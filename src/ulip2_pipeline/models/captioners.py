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
from types import ModuleType
from typing import Any

import torch

from ulip2_pipeline.models import blip2, blip2_t5
from ulip2_pipeline.models.blip2 import GenerationSettings, caption_dtype, end_tokens, vision_dtype

FAMILIES: dict[str, ModuleType] = {"blip2-opt": blip2, "blip2-t5": blip2_t5}
FAMILY_CONFIGS = {
    "blip2-opt": "model_type blip-2 with a decoder-only language model (BLIP-2 OPT)",
    "blip2-t5": "model_type blip-2 with an encoder-decoder language model (BLIP-2 Flan-T5)",
}
LOADING_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys")
KEYS_SHOWN = 5


def supported_families() -> str:
    return "; ".join(f"{name}: {described}" for name, described in FAMILY_CONFIGS.items())


def family_of(config, model_id: str) -> str:
    """The captioner family of a loaded configuration (``transformers.AutoConfig``)."""
    model_type = getattr(config, "model_type", None)
    if model_type == "blip-2":
        return "blip2-opt" if config.use_decoder_only_language_model else "blip2-t5"
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
        return FAMILIES[self.family].caption_batch(self.model, self.processor, images, seeds, settings)


def load_captioner(model_id: str, device: torch.device, precision: str = "auto") -> Captioner:
    """The captioner at ``model_id`` (hub id or local folder) on ``device`` in ``caption_dtype(precision, device)``,
    its family chosen from its configuration."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    family = captioner_family(model_id)
    model = load_exactly(Blip2ForConditionalGeneration, model_id, caption_dtype(precision, device))
    model = model.to(device).eval()
    processor = Blip2Processor.from_pretrained(model_id)
    return Captioner(family, model_id, model, processor, vision_dtype(model), end_tokens(model))
