"""ULIP's contrastive loss: points against frozen image and text features, gathered across GPUs."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows; this rank's rows keep their gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


class UlipLoss(nn.Module):
    """L = 1/2 (CE(P->T) + CE(T->P)) + 1/2 (CE(P->I) + CE(I->P)) with a learnable, clamped logit scale."""

    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def forward(self, points: torch.Tensor, image: torch.Tensor, text: torch.Tensor) -> dict:
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)
        scale = self.logit_scale.exp()
        points, image, text = (gather_with_grad(F.normalize(x.float(), dim=-1)) for x in (points, image, text))
        labels = torch.arange(points.shape[0], device=points.device)
        p_t = scale * points @ text.t()
        p_i = scale * points @ image.t()
        loss_text = (F.cross_entropy(p_t, labels) + F.cross_entropy(p_t.t(), labels)) / 2
        loss_image = (F.cross_entropy(p_i, labels) + F.cross_entropy(p_i.t(), labels)) / 2
        with torch.no_grad():
            accuracy_text = (p_t.argmax(-1) == labels).float().mean()
            accuracy_image = (p_i.argmax(-1) == labels).float().mean()
        return {
            "loss": loss_text + loss_image,
            "loss_text": loss_text.detach(),
            "loss_image": loss_image.detach(),
            "acc_text": accuracy_text,
            "acc_image": accuracy_image,
            "logit_scale": scale.detach(),
        }
