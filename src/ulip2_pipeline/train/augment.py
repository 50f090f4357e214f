"""Point-cloud augmentation as in ULIP (and OpenShape's colour dropping), batched in torch."""

from __future__ import annotations

import math

import torch

UP_INDEX = {"x": 0, "y": 1, "z": 2}


def _rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations about one coordinate axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    a, b = [(1, 2), (2, 0), (0, 1)][axis]
    matrix = torch.zeros(angle.shape[0], 3, 3, device=angle.device)
    matrix[:, axis, axis] = one
    matrix[:, a, a], matrix[:, a, b], matrix[:, b, a], matrix[:, b, b] = c, -s, s, c
    return matrix + zero[:, None, None]


def augment(
    xyz: torch.Tensor,
    rgb: torch.Tensor,
    up_axis: str,
    generator: torch.Generator | None = None,
    grey_rgb_prob: float = 0.5,
    dropout_max: float = 0.875,
    keep_prefix: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale U(0.8, 1.25), shift +-0.1, rotation jitter (+-0.06 rad per axis), a random rotation about the
    up axis, random point dropout (dropped points repeat the first one; the first ``keep_prefix``
    points, the encoder's FPS centres, are never dropped), and rgb replaced by 0.4 grey with
    probability ``grey_rgb_prob``."""
    batch, n, _ = xyz.shape
    device = xyz.device

    def uniform(*shape, low=0.0, high=1.0):
        return torch.rand(*shape, generator=generator, device="cpu").to(device) * (high - low) + low

    rotation = _rotation(UP_INDEX[up_axis], uniform(batch, high=2 * math.pi))
    for axis in range(3):
        rotation = rotation @ _rotation(axis, uniform(batch, low=-0.06, high=0.06))
    xyz = xyz @ rotation.transpose(1, 2)
    xyz = xyz * uniform(batch, 1, 3, low=0.8, high=1.25) + uniform(batch, 1, 3, low=-0.1, high=0.1)
    keep = uniform(batch, n) >= uniform(batch, 1, high=dropout_max)
    keep[:, : max(1, keep_prefix)] = True
    xyz = torch.where(keep.unsqueeze(-1), xyz, xyz[:, :1])
    rgb = torch.where(keep.unsqueeze(-1), rgb, rgb[:, :1])
    grey = uniform(batch, 1, 1) < grey_rgb_prob
    rgb = torch.where(grey, torch.full_like(rgb, 0.4), rgb)
    return xyz, rgb
