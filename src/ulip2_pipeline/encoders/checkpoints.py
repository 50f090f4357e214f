"""Loading an encoder from our checkpoints, ULIP's and OpenShape's, strictly.

- ``ours``: ``{encoder, encoder_config, ...}`` as ``ulip2-train`` writes it.
- ``ulip2``: ULIP's ``{epoch, state_dict, best_acc1, args}``; the state dict carries a ``module.``
  prefix (DDP) and the frozen towers (``open_clip_model.*`` for ULIP-2, the SLIP towers for ULIP-1)
  and ``logit_scale``, which are dropped.
- ``openshape``: OpenShape's ``{state_dict, logit_scale, text_proj, image_proj, optimizer, scheduler,
  epoch}``; only ``state_dict`` (``module.ppat.*``, ``module.proj.*``) is the encoder.

Whatever remains must be exactly the encoder's parameters and buffers with their shapes: a missing,
unexpected or mis-shaped key is an error that names them, never a silently re-initialised layer.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from dataclasses import replace

import torch
from torch import nn

from ulip2_pipeline.encoders.registry import NAMED, EncoderConfig, build, config_from_dict

log = logging.getLogger(__name__)

FORMATS = ("ours", "ulip2", "openshape")
# Keys of ULIP checkpoints that belong to the frozen towers or the loss, not to the 3D encoder.
ULIP_TOWER_KEYS = re.compile(
    r"^(open_clip_model\.|logit_scale$|visual\.|transformer\.|token_embedding\.|positional_embedding$|"
    r"ln_final\.|image_projection$|text_projection$)"
)
# OpenShape's ppat.make: (dim, depth, mlp_dim) -> (patches, radius, nsample), scalings 1 to 6.
OPENSHAPE_SCALINGS = {
    (256, 6, 1024): (64, 0.4, 256),
    (512, 6, 1024): (64, 0.4, 256),
    (512, 12, 1024): (128, 0.35, 128),
    (512, 12, 1536): (384, 0.2, 64),
    (768, 12, 2304): (512, 0.2, 64),
    (768, 24, 3072): (512, 0.2, 64),
}


class CheckpointError(ValueError):
    """A checkpoint that does not hold the encoder its format promises; the message says what differs."""


def read_checkpoint(path) -> dict:
    """The pickled dict at ``path``; ULIP's carry an argparse Namespace, the one non-tensor type allowed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors and argparse.Namespace, refused by torch's "
            f"safe loader ({str(exc).splitlines()[0]})"
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint dict")
    return state


def _strip_module(state: dict) -> dict:
    return {key.removeprefix("module."): value for key, value in state.items()}


def _count_blocks(keys, pattern: str) -> int:
    numbers = {int(m.group(1)) for key in keys if (m := re.match(pattern, key))}
    return max(numbers) + 1 if numbers else 0


def ulip_config(weights: dict) -> EncoderConfig:
    """ULIP's Point-BERT sized from its weights; the grouping (512 x 32) is ULIP's, which weights do not show."""
    try:
        first = weights["point_encoder.encoder.first_conv.0.weight"]
        width = weights["point_encoder.reduce_dim.weight"].shape[0]
        config = replace(
            NAMED["ulip2"],
            width=width,
            heads=max(1, width // 64),
            depth=_count_blocks(weights, r"point_encoder\.blocks\.blocks\.(\d+)\."),
            in_channels=first.shape[1],
            patch_hidden=first.shape[0],
            encoder_dims=weights["point_encoder.reduce_dim.weight"].shape[1],
            embed_dim=weights["pc_projection"].shape[1],
        )
    except KeyError as exc:
        raise CheckpointError(
            f"not a ULIP Point-BERT checkpoint: no {exc.args[0]!r} (after dropping 'module.')"
        ) from exc
    return config


def openshape_config(weights: dict) -> EncoderConfig:
    try:
        dim = weights["ppat.lift.0.weight"].shape[0]
        depth = _count_blocks(weights, r"ppat\.transformer\.layers\.(\d+)\.")
        mlp_dim = weights["ppat.transformer.layers.0.1.fn.net.0.weight"].shape[0]
        inner = weights["ppat.transformer.layers.0.0.fn.to_qkv.weight"].shape[0] // 3
        first = weights["ppat.sa.mlp_convs.0.weight"]
        sa_dim = weights["ppat.lift.0.weight"].shape[1] - 3
        embed_dim = weights["proj.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(
            f"not an OpenShape PointBERT checkpoint: no {exc.args[0]!r} (after dropping 'module.')"
        ) from exc
    if (dim, depth, mlp_dim) not in OPENSHAPE_SCALINGS:
        raise CheckpointError(
            f"an OpenShape PointBERT of width {dim}, depth {depth}, MLP {mlp_dim} is none of ppat.make's scalings"
        )
    patches, radius, nsample = OPENSHAPE_SCALINGS[dim, depth, mlp_dim]
    return replace(
        NAMED["openshape_pointbert"],
        dim=dim,
        depth=depth,
        heads=inner // 64,
        mlp_dim=mlp_dim,
        sa_dim=sa_dim,
        patches=patches,
        radius=radius,
        nsample=nsample,
        in_channels=first.shape[1] - 3,
        sa_hidden=first.shape[0],
        embed_dim=embed_dim,
    )


def load_strict(encoder: nn.Module, weights: dict, source: str) -> nn.Module:
    """Load ``weights`` into ``encoder`` only if keys and shapes match exactly; otherwise say what differs."""
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = [
        f"{key} {tuple(weights[key].shape)} != {tuple(expected[key].shape)}"
        for key in sorted(set(weights) & set(expected))
        if tuple(weights[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit {type(encoder).__name__}: " + "; ".join(problems))
    encoder.load_state_dict(weights, strict=True)
    return encoder


def load_encoder(path, checkpoint_format: str = "ours", device: torch.device | str = "cpu") -> nn.Module:
    """The encoder in ``path`` (a checkpoint of ``checkpoint_format``), in eval mode on ``device``."""
    if checkpoint_format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {checkpoint_format!r}; known: {', '.join(FORMATS)}")
    state = read_checkpoint(path)
    if checkpoint_format == "ours":
        if "encoder" not in state or "encoder_config" not in state:
            raise CheckpointError(f"{path}: not a ulip2-pipeline model (no 'encoder' / 'encoder_config'); try --format")
        try:
            config = config_from_dict(state["encoder_config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        weights = state["encoder"]
    else:
        weights = _strip_module(state.get("state_dict", state))
        if checkpoint_format == "ulip2":
            args = state.get("args")
            model_name = getattr(args, "model", None)
            if model_name is not None and "pointbert" not in str(model_name).lower():
                raise CheckpointError(f"{path}: a ULIP {model_name} checkpoint; only its Point-BERT models load here")
            weights = {k: v for k, v in weights.items() if not ULIP_TOWER_KEYS.match(k)}
            config = ulip_config(weights)
        else:
            config = openshape_config(weights)
    encoder = load_strict(build(config), weights, str(path))
    log.info("loaded a %s encoder from %s (%s)", config.architecture, path, checkpoint_format)
    return encoder.to(device).eval()
