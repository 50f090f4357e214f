"""Choosing patch centres and their neighbours, as the published encoders do.

ULIP's Point-BERT uses pointnet2_ops' CUDA farthest-point sampling: it starts at point 0, never
picks a point within |p|^2 <= 1e-3 of the origin after the first, and breaks ties towards the lower
index. OpenShape's uses DGL's sampler, which starts at a random point; here it starts at point 0 so
that the same cloud always gives the same features (the only departure, and it is documented).
"""

from __future__ import annotations

import torch

NEAR_ORIGIN = 1e-3  # pointnet2_ops skips points whose squared norm is at most this


def farthest_point_sample(xyz: torch.Tensor, count: int, skip_near_origin: bool = False) -> torch.Tensor:
    """(B, count) indices of a greedy farthest-point sample starting at point 0.

    With ``skip_near_origin``, points with squared norm <= 1e-3 are never chosen after the first
    (pointnet2_ops' rule, which ULIP's checkpoints were trained with)."""
    batch, n, _ = xyz.shape
    chosen = torch.zeros(batch, count, dtype=torch.long, device=xyz.device)
    nearest = torch.full((batch, n), 1e10, dtype=xyz.dtype, device=xyz.device)
    if skip_near_origin:  # -1 stays below every distance, so these points are never the farthest again
        eligible = (xyz * xyz).sum(-1) > NEAR_ORIGIN
        nearest = torch.where(eligible, nearest, torch.full_like(nearest, -1.0))
    current = torch.zeros(batch, dtype=torch.long, device=xyz.device)
    rows = torch.arange(batch, device=xyz.device)
    for i in range(count):
        chosen[:, i] = current
        distance = ((xyz - xyz[rows, current].unsqueeze(1)) ** 2).sum(-1)
        nearest = torch.minimum(nearest, distance)
        current = nearest.argmax(-1)  # the first of equal maxima, as the kernel's strict '>' does
    return chosen


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, N, C) at index (B, ...) -> (B, ..., C)."""
    flat = index.reshape(index.shape[0], -1)
    picked = torch.gather(values, 1, flat.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    return picked.reshape(*index.shape, values.shape[-1])


def knn(centres: torch.Tensor, xyz: torch.Tensor, k: int) -> torch.Tensor:
    """(B, G, k) indices of each centre's k nearest points (squared Euclidean distance)."""
    return torch.cdist(centres, xyz).topk(k, dim=-1, largest=False).indices


def ball_query(centres: torch.Tensor, xyz: torch.Tensor, radius: float, count: int) -> torch.Tensor:
    """(B, G, count): the lowest-numbered ``count`` points within ``radius`` of each centre (distance
    <= radius), in index order, padded with the first of them (PointNet++'s query_ball_point)."""
    n = xyz.shape[1]
    if n < count:
        raise ValueError(f"a cloud of {n} points is smaller than a group of {count}")
    within = torch.cdist(centres, xyz).square() <= radius * radius
    numbers = torch.arange(n, device=xyz.device).expand_as(within)
    candidates = torch.where(within, numbers, torch.full_like(numbers, n))
    lowest = candidates.topk(count, dim=-1, largest=False, sorted=True).values
    return torch.where(lowest == n, lowest[..., :1], lowest)
