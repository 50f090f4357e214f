"""Zero-shot classification: prompt-ensembled class embeddings, cosine logits, top-1/5 and class-mean accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ULIP's 64 prompt templates, exactly its data/templates.json "modelnet40_64" (CLIP-style templates
# extended for point clouds), which ULIP and ULIP-2 zero-shot evaluation average over.
TEMPLATES = [
    "a point cloud model of {}.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "a photo of a {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
    "itap of a {}.",
    "itap of my {}.",
    "itap of the {}.",
    "a photo of a {}.",
    "a photo of my {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    "a good photo of a {}.",
    "a good photo of the {}.",
    "a bad photo of a {}.",
    "a bad photo of the {}.",
    "a photo of a nice {}.",
    "a photo of the nice {}.",
    "a photo of a cool {}.",
    "a photo of the cool {}.",
    "a photo of a weird {}.",
    "a photo of the weird {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of a clean {}.",
    "a photo of the clean {}.",
    "a photo of a dirty {}.",
    "a photo of the dirty {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of a {}.",
    "a dark photo of the {}.",
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of a {}.",
    "a low resolution photo of the {}.",
    "a cropped photo of a {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of a {}.",
    "a blurry photo of the {}.",
    "a pixelated photo of a {}.",
    "a pixelated photo of the {}.",
    "a black and white photo of the {}.",
    "a black and white photo of a {}",  # sic: ULIP's list has no period here
    "a plastic {}.",
    "the plastic {}.",
    "a toy {}.",
    "the toy {}.",
    "a plushie {}.",
    "the plushie {}.",
    "a cartoon {}.",
    "the cartoon {}.",
    "an embroidered {}.",
    "the embroidered {}.",
    "a painting of the {}.",
    "a painting of a {}.",
]


@torch.inference_mode()
def class_embeddings(encode_text, class_names: list[str], templates: list[str] = TEMPLATES) -> torch.Tensor:
    """(classes, D): per class, each template encoded and normalised, averaged, re-normalised.

    Names go into the templates as given: each benchmark reader returns them spelt the way its
    publisher prompts with (e.g. ULIP's "flower pot" for ModelNet40's "flower_pot")."""
    rows = []
    for name in class_names:
        features = F.normalize(encode_text([t.format(name) for t in templates]).float(), dim=-1)
        rows.append(F.normalize(features.mean(dim=0), dim=-1))
    return torch.stack(rows)


def confusion(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """The confusion matrix (rows: true class, columns: top-1 prediction) and the top-1 of every
    class that has samples (percent)."""
    count = len(class_names)
    cells = labels.long() * count + logits.argmax(dim=1).long()
    matrix = torch.bincount(cells, minlength=count * count).reshape(count, count)
    per_class = {
        name: round(100 * matrix[i, i].item() / matrix[i].sum().item(), 2)
        for i, name in enumerate(class_names)
        if matrix[i].sum() > 0
    }
    return {"confusion": {"classes": list(class_names), "matrix": matrix.tolist()}, "per_class_top1": per_class}


def accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """top-1 and top-5 over samples, and the mean over classes of per-class top-1 (percent)."""
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hit1 = (top5[:, 0] == labels).float()
    hit5 = (top5 == labels[:, None]).any(dim=1).float()
    per_class = [hit1[labels == c].mean().item() for c in range(num_classes) if (labels == c).any()]
    return {
        "top1": round(100 * hit1.mean().item(), 2),
        "top5": round(100 * hit5.mean().item(), 2),
        "class_mean": round(100 * float(np.mean(per_class)), 2),
        "samples": int(labels.numel()),
        "classes": num_classes,
        "chance_top1": round(100 / num_classes, 2),
    }


@torch.inference_mode()
def evaluate(
    encoder,
    points: list[tuple[np.ndarray, np.ndarray]],
    labels: list[int],
    class_features: torch.Tensor,
    device: torch.device,
    batch_size: int = 32,
    class_names: list[str] | None = None,
) -> dict:
    """Zero-shot accuracy of ``encoder`` on (xyz, rgb) clouds against class embeddings; with
    ``class_names``, also the confusion matrix and per-class top-1."""
    encoder.eval()
    logits = []
    for start in range(0, len(points), batch_size):
        chunk = points[start : start + batch_size]
        xyz = torch.from_numpy(np.stack([c[0] for c in chunk])).float().to(device)
        rgb = torch.from_numpy(np.stack([c[1] for c in chunk])).float().to(device)
        features = F.normalize(encoder(xyz, rgb).float(), dim=-1)
        logits.append(features @ class_features.to(device).t())
    logits, labels = torch.cat(logits).cpu(), torch.tensor(labels)
    result = accuracy(logits, labels, class_features.shape[0])
    if class_names is not None:
        result.update(confusion(logits, labels, class_names))
    return result
