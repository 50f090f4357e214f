"""The encoders a run can train (``train.model``) and the config every checkpoint records to rebuild them."""

from __future__ import annotations

from dataclasses import asdict, replace

from torch import nn

from ulip2_pipeline.encoders.pointbert import PointBertConfig, Ulip2PointBert
from ulip2_pipeline.encoders.ppat import OpenShapePointBert, PpatConfig

EncoderConfig = PointBertConfig | PpatConfig

# Sizes as published (ULIP's ULIP_2_PointBERT_10k_colored_pointclouds.yaml and PointTransformer_8192point.yaml;
# OpenShape's ppat.make at scaling 4), and shrunk stand-ins of each for the demo and the tests.
NAMED = {
    "ulip2": PointBertConfig(width=384, depth=18, heads=6, groups=512, group_size=32, in_channels=6, embed_dim=1280),
    "ulip1": PointBertConfig(width=384, depth=12, heads=6, groups=512, group_size=32, in_channels=3, embed_dim=512),
    "tiny": PointBertConfig(
        width=64,
        depth=2,
        heads=2,
        groups=64,
        group_size=16,
        in_channels=6,
        embed_dim=0,
        encoder_dims=64,
        patch_hidden=32,
    ),
    "openshape_pointbert": PpatConfig(
        dim=512,
        depth=12,
        heads=8,
        dim_head=64,
        mlp_dim=1536,
        sa_dim=256,
        patches=384,
        radius=0.2,
        nsample=64,
        in_channels=6,
        embed_dim=1280,
    ),
    "openshape_tiny": PpatConfig(
        dim=64,
        depth=2,
        heads=2,
        dim_head=32,
        mlp_dim=128,
        sa_dim=32,
        patches=64,
        radius=0.2,
        nsample=16,
        in_channels=6,
        embed_dim=0,
        sa_hidden=16,
    ),
}
ARCHITECTURES = {"pointbert": (PointBertConfig, Ulip2PointBert), "ppat": (PpatConfig, OpenShapePointBert)}


def named_config(name: str, embed_dim: int) -> EncoderConfig:
    """The config of a named size, projecting to ``embed_dim`` (the frozen CLIP's width)."""
    if name not in NAMED:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(NAMED)}")
    return replace(NAMED[name], embed_dim=embed_dim)


def build(config: EncoderConfig) -> nn.Module:
    return ARCHITECTURES[config.architecture][1](config)


def config_dict(config: EncoderConfig) -> dict:
    return asdict(config)


def config_from_dict(recorded: dict) -> EncoderConfig:
    """The config a checkpoint recorded; checkpoints from before the published layouts record no architecture."""
    architecture = recorded.get("architecture")
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"the checkpoint's encoder_config names no known architecture ({architecture!r}); checkpoints "
            "written before ulip2-pipeline used ULIP-2's exact Point-BERT layers cannot load: train it again"
        )
    return ARCHITECTURES[architecture][0](**recorded)


def prefix_points(config: EncoderConfig) -> int:
    """How many leading points the encoder's farthest-point sample can pick first (augmentation keeps them)."""
    return config.groups if isinstance(config, PointBertConfig) else config.patches
