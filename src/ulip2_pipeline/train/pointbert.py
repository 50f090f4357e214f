"""Point-BERT in plain PyTorch: FPS centres, kNN groups, mini-PointNet patches, transformer, projection.

Pure-torch FPS and kNN run anywhere; inputs that are already in farthest-point order
(every cloud this pipeline stores) take their first G points as the centres, which
is what FPS would pick, at no cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

SIZES = {
    # ULIP-1 / ULIP-2 Point-BERT: width 384, 6 heads, 512 groups of 32, depth 12 / 18.
    "ulip1": dict(width=384, depth=12, heads=6, groups=512, group_size=32),
    "ulip2": dict(width=384, depth=18, heads=6, groups=512, group_size=32),
    "tiny": dict(width=64, depth=2, heads=2, groups=64, group_size=16, patch_hidden=32),
}


@dataclass
class PointBertConfig:
    width: int = 384
    depth: int = 12
    heads: int = 6
    groups: int = 512
    group_size: int = 32
    in_channels: int = 6  # xyz + rgb
    patch_hidden: int = 128  # mini-PointNet widths: h, 2h, then 4h (Point-BERT: 128, 256, 512)
    embed_dim: int = 1280  # the CLIP width to project to
    drop_path: float = 0.1
    centres: str = "prefix"  # "prefix": inputs are FPS-ordered; "fps": run FPS here

    @classmethod
    def named(cls, size: str, embed_dim: int, **overrides) -> "PointBertConfig":
        return cls(**{**SIZES[size], "embed_dim": embed_dim, **overrides})


def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """(B, count) indices of a greedy FPS starting at point 0, in pure torch."""
    batch, n, _ = xyz.shape
    chosen = torch.zeros(batch, count, dtype=torch.long, device=xyz.device)
    nearest = torch.full((batch, n), float("inf"), device=xyz.device)
    current = torch.zeros(batch, dtype=torch.long, device=xyz.device)
    rows = torch.arange(batch, device=xyz.device)
    for i in range(count):
        chosen[:, i] = current
        distance = ((xyz - xyz[rows, current].unsqueeze(1)) ** 2).sum(-1)
        nearest = torch.minimum(nearest, distance)
        current = nearest.argmax(-1)
    return chosen


def knn(centres: torch.Tensor, xyz: torch.Tensor, k: int) -> torch.Tensor:
    """(B, G, k) indices of each centre's k nearest points."""
    return torch.cdist(centres, xyz).topk(k, dim=-1, largest=False).indices


class PatchEncoder(nn.Module):
    """Point-BERT's mini-PointNet: per-point MLP, max-pool, concat with the pooled feature, MLP, max-pool.

    The shared per-point layers are Linear layers over the channel axis (the same maps as
    Point-BERT's 1x1 convolutions, much faster on many small groups).
    """

    def __init__(self, in_channels: int, width: int, hidden: int = 128):
        super().__init__()
        self.first_in, self.first_norm = nn.Linear(in_channels, hidden), nn.BatchNorm1d(hidden)
        self.first_out = nn.Linear(hidden, 2 * hidden)
        self.second_in, self.second_norm = nn.Linear(4 * hidden, 4 * hidden), nn.BatchNorm1d(4 * hidden)
        self.second_out = nn.Linear(4 * hidden, width)

    @staticmethod
    def _norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        return norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # (B, G, k, C) -> (B, G, width)
        x = self.first_out(torch.relu(self._norm(self.first_norm, self.first_in(patches))))
        pooled = x.max(dim=2, keepdim=True).values
        x = torch.cat([pooled.expand_as(x), x], dim=-1)
        x = self.second_out(torch.relu(self._norm(self.second_norm, self.second_in(x))))
        return x.max(dim=2).values


class DropPath(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attention(h, h, h, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PointBert(nn.Module):
    def __init__(self, config: PointBertConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.patch_encoder = PatchEncoder(config.in_channels, width, config.patch_hidden)
        self.position = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_position = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        rates = torch.linspace(0, config.drop_path, config.depth).tolist()
        self.blocks = nn.ModuleList(Block(width, config.heads, rate) for rate in rates)
        self.norm = nn.LayerNorm(width)
        self.projection = nn.Linear(2 * width, config.embed_dim)  # [CLS || max-pool] -> CLIP width

    def group(self, xyz: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        if config.centres == "prefix":
            centres = xyz[:, : config.groups]
        else:
            index = farthest_point_sample(xyz, config.groups)
            centres = torch.gather(xyz, 1, index.unsqueeze(-1).expand(-1, -1, 3))
        neighbours = knn(centres, xyz, config.group_size)  # (B, G, k)
        gather = neighbours.reshape(xyz.shape[0], -1, 1)
        local_xyz = torch.gather(xyz, 1, gather.expand(-1, -1, 3)).reshape(*neighbours.shape, 3)
        local_rgb = torch.gather(rgb, 1, gather.expand(-1, -1, 3)).reshape(*neighbours.shape, 3)
        patches = torch.cat([local_xyz - centres.unsqueeze(2), local_rgb], dim=-1)
        return centres, patches

    def forward(self, xyz: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        centres, patches = self.group(xyz, rgb)
        tokens = self.patch_encoder(patches) + self.position(centres)
        cls = (self.cls_token + self.cls_position).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.projection(torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1))


def build(config: PointBertConfig) -> PointBert:
    return PointBert(config)


def config_dict(config: PointBertConfig) -> dict:
    return asdict(config)
