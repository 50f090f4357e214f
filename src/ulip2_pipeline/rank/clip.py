"""OpenCLIP scoring: each image encoded once, its captions together, cosine similarity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Clip:
    model: object
    preprocess: object
    tokenizer: object
    device: torch.device


def load_clip(arch: str, pretrained: str | None, arch_config: str | None, device: torch.device) -> Clip:
    """Any open_clip architecture with a pretrained tag (``openai``) or a local checkpoint path.

    ``arch_config`` registers an architecture JSON first (how the tiny demo model is found).
    """
    import open_clip

    if arch_config:
        open_clip.add_model_config(arch_config)
    precision = "fp16" if device.type == "cuda" else "fp32"
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None,
                                                                 device=device, precision=precision)
    return Clip(model.eval(), preprocess, open_clip.get_tokenizer(arch), device)


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
