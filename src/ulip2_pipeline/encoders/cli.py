"""``ulip2-encode``: the projected 3D features of a batch of clouds, from our checkpoints, ULIP's or OpenShape's.

    ulip2-encode --checkpoint CKPT --format ulip2|openshape|ours --points CLOUDS.npy --out EMB.npy

CLOUDS.npy is float32 (B, N, 6): xyz y-up, normalised to the unit sphere (centroid 0, largest
radius 1), then rgb in [0, 1]. EMB.npy is float32 (B, D): the features zero-shot evaluation
compares with text features (not normalised).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np
import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.encoders.checkpoints import FORMATS, CheckpointError, load_encoder

log = logging.getLogger(__name__)


def check_clouds(clouds: np.ndarray, source: str) -> np.ndarray:
    if clouds.ndim != 3 or clouds.shape[-1] != 6:
        raise ValueError(f"{source}: expected clouds of shape (B, N, 6) (xyz then rgb), got {clouds.shape}")
    if not np.isfinite(clouds).all():
        raise ValueError(f"{source}: holds NaN or infinite values")
    rgb = clouds[..., 3:]
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(
            f"{source}: rgb must lie in [0, 1] (found {rgb.min():.3g} .. {rgb.max():.3g}); divide 0-255 colours by 255"
        )
    return clouds.astype(np.float32, copy=False)


@torch.inference_mode()
def encode_clouds(encoder, clouds: np.ndarray, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """(B, N, 6) float32 clouds -> (B, D) float32 features, in fp32 and in ``batch_size`` chunks."""
    encoder.eval()
    out = []
    for start in range(0, len(clouds), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(clouds[start : start + batch_size])).to(device)
        out.append(encoder(chunk[..., :3], chunk[..., 3:]).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ulip2-encode", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the checkpoint file (model.pt, ULIP's or OpenShape's)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="who wrote the checkpoint")
    parser.add_argument("--points", required=True, help="float32 .npy of shape (B, N, 6)")
    parser.add_argument("--out", required=True, help="where to write the float32 (B, D) features (.npy)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = pick_device(args.device)
    try:
        clouds = check_clouds(np.load(args.points), args.points)
        encoder = load_encoder(args.checkpoint, args.format, device)
    except (CheckpointError, ValueError, OSError) as exc:
        sys.exit(f"ulip2-encode: {exc}")
    started = time.perf_counter()
    features = encode_clouds(encoder, clouds, device, args.batch_size)
    seconds = time.perf_counter() - started
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, features)
    print(
        json.dumps(
            {
                "clouds": len(clouds),
                "points": clouds.shape[1],
                "dim": features.shape[-1],
                "seconds": round(seconds, 3),
                "device": str(device),
            }
        )
    )


if __name__ == "__main__":
    main()
