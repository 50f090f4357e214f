"""OpenShape's "PointBERT": ``ppat.py``'s PointPatchTransformer and its projection, with its parameter names.

- Axes: OpenShape's data is z-up; the encoder takes our y-up clouds and swaps y and z first.
- Patches: ``patches`` centres by farthest-point sampling (from point 0; OpenShape's DGL sampler
  starts at a random point), each with the lowest-numbered ``nsample`` points within ``radius``
  (padded with the first); a patch point is [xyz - centre, xyz, rgb] (9 channels with colour).
- Set abstraction (``ppat.sa``): three 1x1 Conv2d + BatchNorm + ReLU (9 -> 64 -> 64 -> ``sa_dim``),
  max over the patch; ``lift``: Conv1d over [centre, feature] to ``dim``, then LayerNorm.
- Transformer: a learned CLS vector, ``depth`` pre-norm blocks (qkv without bias, ``heads`` x
  ``dim_head``, GELU MLP), no position embedding and no final norm; the CLS output goes through
  ``proj`` (Linear ``dim`` -> embed_dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ulip2_pipeline.encoders.grouping import ball_query, farthest_point_sample, gather_points

Y_UP_TO_Z_UP = (0, 2, 1)


@dataclass(frozen=True)
class PpatConfig:
    dim: int
    depth: int
    heads: int
    dim_head: int
    mlp_dim: int
    sa_dim: int
    patches: int
    radius: float
    nsample: int
    in_channels: int  # 6: xyz + rgb; 3: xyz
    embed_dim: int
    sa_hidden: int = 64
    architecture: str = "ppat"


class _ChannelsLast(nn.Module):
    """(B, C, S) -> (B, S, C); a module so ``lift``'s LayerNorm keeps OpenShape's index 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1)


class SetAbstraction(nn.Module):
    def __init__(self, in_channels: int, widths: list[int]):
        super().__init__()
        self.mlp_convs, self.mlp_bns = nn.ModuleList(), nn.ModuleList()
        for width in widths:
            self.mlp_convs.append(nn.Conv2d(in_channels, width, 1))
            self.mlp_bns.append(nn.BatchNorm2d(width))
            in_channels = width

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # (B, S, k, C) -> (B, S, width)
        x = patches
        for conv, norm in zip(self.mlp_convs, self.mlp_bns):
            x = F.linear(x, conv.weight.flatten(1), conv.bias)
            x = torch.relu(norm(x.reshape(-1, x.shape[-1], 1, 1)).reshape(x.shape))
        return x.max(dim=2).values


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (t.reshape(batch, tokens, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # scale dim_head ** -0.5, as OpenShape's
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, config: PpatConfig):
        super().__init__()
        dim = config.dim
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, Attention(dim, config.heads, config.dim_head)),
                    PreNorm(dim, FeedForward(dim, config.mlp_dim)),
                ]
            )
            for _ in range(config.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return x


class PointPatchTransformer(nn.Module):
    def __init__(self, config: PpatConfig):
        super().__init__()
        self.config = config
        hidden = config.sa_hidden
        self.sa = SetAbstraction(config.in_channels + 3, [hidden, hidden, config.sa_dim])
        self.lift = nn.Sequential(
            nn.Conv1d(config.sa_dim + 3, config.dim, 1), _ChannelsLast(), nn.LayerNorm(config.dim)
        )
        self.cls_token = nn.Parameter(torch.randn(config.dim))
        self.transformer = Transformer(config)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        config = self.config
        with torch.no_grad():
            centres_index = farthest_point_sample(xyz.float(), config.patches)
        centres = gather_points(xyz, centres_index)
        neighbours = ball_query(centres, xyz, config.radius, config.nsample)
        patches = torch.cat(
            [gather_points(xyz, neighbours) - centres.unsqueeze(2), gather_points(features, neighbours)], -1
        )
        pooled = self.sa(patches)
        x = self.lift(torch.cat([centres, pooled], dim=-1).transpose(1, 2))
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1)
        return self.transformer(x)[:, 0]


class OpenShapePointBert(nn.Module):
    """OpenShape's ``Projected(PointPatchTransformer, Linear)``, taking y-up clouds."""

    def __init__(self, config: PpatConfig):
        super().__init__()
        self.config = config
        self.ppat = PointPatchTransformer(config)
        self.proj = nn.Linear(config.dim, config.embed_dim)

    def forward(self, xyz: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        xyz = xyz[..., list(Y_UP_TO_Z_UP)]
        features = torch.cat([xyz, rgb], dim=-1) if self.config.in_channels == 6 else xyz
        return self.proj(self.ppat(xyz, features))
