"""ULIP-2's Point-BERT (``ULIP2_PointBERT_Colored``), layer for layer and with its parameter names.

- Groups: ``groups`` centres by farthest-point sampling from the first point (pointnet2_ops' rules),
  each with its ``group_size`` nearest points; a patch is [xyz - centre, rgb].
- Patch encoder (``point_encoder.encoder``): per point 6 -> 128 (BatchNorm, ReLU) -> 256, max over
  the patch, concatenated back to 512, 512 -> 512 (BatchNorm, ReLU) -> ``encoder_dims`` (256), max;
  then ``reduce_dim`` 256 -> width.
- Positions: MLP 3 -> 128 -> GELU -> width for the centres, ``cls_pos`` for the CLS token, added to
  the tokens before every block.
- Blocks: pre-norm, qkv without bias, MLP ratio 4, stochastic depth rising to ``drop_path``.
- Output: LayerNorm, [CLS || max over patches] (2 x width) @ ``pc_projection`` (a bare matrix).

The per-point layers keep ULIP's 1x1 Conv1d parameters (so its weights load unchanged) but run as
matrix products over the channel axis, the same map and much faster on many small patches.
ULIP-1's Point-BERT is the same network on xyz alone (``in_channels`` 3) with 12 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ulip2_pipeline.encoders.grouping import farthest_point_sample, gather_points, knn


@dataclass(frozen=True)
class PointBertConfig:
    width: int
    depth: int
    heads: int
    groups: int
    group_size: int
    in_channels: int  # 6: xyz + rgb (ULIP-2); 3: xyz (ULIP-1)
    embed_dim: int  # the CLIP width the projection maps to
    encoder_dims: int = 256
    patch_hidden: int = 128  # the patch encoder's widths are h, 2h, 4h (ULIP: 128, 256, 512)
    drop_path: float = 0.1
    architecture: str = "pointbert"


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


def _norm_channels(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    return norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class PatchEncoder(nn.Module):
    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(in_channels, hidden, 1), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Conv1d(hidden, 2 * hidden, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(4 * hidden, 4 * hidden, 1),
            nn.BatchNorm1d(4 * hidden),
            nn.ReLU(),
            nn.Conv1d(4 * hidden, out_channels, 1),
        )

    @staticmethod
    def _mlp(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        conv_in, norm, _, conv_out = layers
        return _pointwise(conv_out, torch.relu(_norm_channels(norm, _pointwise(conv_in, x))))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # (B, G, k, C) -> (B, G, out_channels)
        x = self._mlp(self.first_conv, patches)
        pooled = x.max(dim=2, keepdim=True).values
        x = self._mlp(self.second_conv, torch.cat([pooled.expand_as(x), x], dim=-1))
        return x.max(dim=2).values


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5, as ULIP's
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = Mlp(width, 4 * width)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, drop_path: float):
        super().__init__()
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(Block(width, heads, rate) for rate in rates)

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + position)
        return x


class PointTransformer(nn.Module):
    """ULIP's ``PointTransformer_Colored`` (its ``point_encoder``): clouds to [CLS || max] features."""

    def __init__(self, config: PointBertConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.encoder = PatchEncoder(config.in_channels, config.patch_hidden, config.encoder_dims)
        self.reduce_dim = nn.Linear(config.encoder_dims, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, width))
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, width))
        self.blocks = TransformerEncoder(width, config.depth, config.heads, config.drop_path)
        self.norm = nn.LayerNorm(width)

    def group(self, xyz: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        with torch.no_grad():
            centres_index = farthest_point_sample(xyz.float(), config.groups, skip_near_origin=True)
        centres = gather_points(xyz, centres_index)
        neighbours = knn(centres, xyz, config.group_size)
        patches = gather_points(xyz, neighbours) - centres.unsqueeze(2)
        if config.in_channels > 3:
            patches = torch.cat([patches, gather_points(rgb, neighbours)], dim=-1)
        return centres, patches

    def forward(self, xyz: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        centres, patches = self.group(xyz, rgb)
        tokens = self.reduce_dim(self.encoder(patches))
        batch = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        position = torch.cat([self.cls_pos.expand(batch, -1, -1), self.pos_embed(centres)], dim=1)
        x = self.norm(self.blocks(x, position))
        return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1)


class Ulip2PointBert(nn.Module):
    """The point encoder with its projection, named as in ULIP's ``ULIP2_WITH_OPENCLIP``."""

    def __init__(self, config: PointBertConfig):
        super().__init__()
        self.config = config
        self.point_encoder = PointTransformer(config)
        self.pc_projection = nn.Parameter(torch.empty(2 * config.width, config.embed_dim))
        nn.init.normal_(self.pc_projection, std=config.embed_dim**-0.5)

    def forward(self, xyz: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.point_encoder(xyz, rgb) @ self.pc_projection
