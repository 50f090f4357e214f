"""OpenCLIP scoring: each image encoded once, its captions together, cosine similarity.

Loading keeps what the weights were trained with. The activation: open_clip's
``ViT-L-14`` config uses GELU, but its ``openai`` weights were trained with
QuickGELU, and open_clip only warns; ``load_clip`` reads the pretrained registry
and loads such a tag with QuickGELU (as ``ViT-L-14-quickgelu`` would), saying so
in the log. The numeric precision: with ``fp16``/``bf16`` open_clip casts the
tower's weights but not its input, so the image tower casts its pixels itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.settings import ClipSettings

log = logging.getLogger(__name__)

CLIP_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Clip:
    model: object
    preprocess: object
    tokenizer: object
    device: torch.device
    dtype: torch.dtype = torch.float32  # what the image tower computes in
    activation: str = "gelu"  # gelu or quick_gelu, read from the built model


def clip_precision(precision: str, device: torch.device) -> str:
    """``auto``: fp16 on a GPU (OpenAI's and open_clip's own inference precision), fp32 on the CPU."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in CLIP_PRECISIONS:
        raise ValueError(f"CLIP precision must be auto or one of {list(CLIP_PRECISIONS)}, not {precision!r}")
    return precision


def needs_quick_gelu(arch: str, pretrained: str | None) -> bool:
    """True when ``pretrained`` is a registry tag trained with QuickGELU and ``arch``'s config uses GELU.

    A local checkpoint file carries no such record: its architecture config decides.
    A QuickGELU architecture with a tag trained with GELU is a configuration error.
    """
    import open_clip

    if not pretrained or os.path.isfile(pretrained):
        return False
    name = arch.replace("/", "-")
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag:
        return False
    arch_quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu"))
    tag_quick = bool(tag.get("quick_gelu"))
    if tag_quick and not arch_quick:
        log.warning(
            "%s/%s: these weights were trained with QuickGELU but the %s config uses GELU; "
            "loading with QuickGELU (as %s-quickgelu)",
            arch,
            pretrained,
            arch,
            arch,
        )
        return True
    if arch_quick and not tag_quick:
        raise ValueError(
            f"open_clip architecture {arch!r} uses QuickGELU, but its pretrained weights {pretrained!r} "
            f"were trained with GELU: use the architecture without '-quickgelu'"
        )
    return False


def model_activation(model) -> str:
    from open_clip.transformer import QuickGELU

    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"


def _cast_input_to(dtype: torch.dtype):
    def hook(module, args):
        return (args[0].to(dtype), *args[1:])

    return hook


def load_clip(
    arch: str, pretrained: str | None, arch_config: str | None, device: torch.device, precision: str = "auto"
) -> Clip:
    """Any open_clip architecture with a pretrained tag (``openai``) or a local checkpoint path.

    ``arch_config`` registers an architecture JSON first (how the tiny demo models are found).
    """
    import open_clip

    if arch_config:
        open_clip.add_model_config(arch_config)
    precision = clip_precision(precision, device)
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch,
        pretrained=pretrained or None,
        device=device,
        precision=precision,
        force_quick_gelu=needs_quick_gelu(arch, pretrained),
    )
    dtype = open_clip.get_input_dtype(precision) or torch.float32
    # Every caller's pixels (rank, embed, training's online towers) enter in the tower's own dtype.
    model.visual.register_forward_pre_hook(_cast_input_to(dtype))
    return Clip(model.eval(), preprocess, open_clip.get_tokenizer(arch), device, dtype, model_activation(model))


def load_configured_clip(settings: ClipSettings, device: torch.device | None = None) -> Clip:
    """The CLIP a configuration section names, on ``device`` (by default the one its ``device`` picks)."""
    device = device or pick_device(settings.device)
    return load_clip(settings.arch, settings.pretrained, settings.arch_config, device, settings.precision)


@torch.inference_mode()
def score_views(clip: Clip, images: list, captions: list[list[str]]) -> np.ndarray:
    """(views, captions per view) cosine similarities between each image and its own captions."""
    pixels = torch.stack([clip.preprocess(image) for image in images]).to(clip.device)
    image_features = clip.model.encode_image(pixels).float()
    per_view = len(captions[0])
    text = clip.tokenizer([c for group in captions for c in group]).to(clip.device)
    text_features = clip.model.encode_text(text).float().reshape(len(images), per_view, -1)
    image_features = torch.nn.functional.normalize(image_features, dim=-1)
    text_features = torch.nn.functional.normalize(text_features, dim=-1)
    return torch.einsum("vd,vcd->vc", image_features, text_features).cpu().numpy()


def top_k(scores: np.ndarray, captions: list[str], k: int) -> list[int]:
    """Indices of the k best non-empty captions; ties go to the earlier caption."""
    masked = np.where([bool(c) for c in captions], scores, -np.inf)
    order = np.argsort(-masked, kind="stable")
    return [int(i) for i in order[:k] if np.isfinite(masked[i])]
