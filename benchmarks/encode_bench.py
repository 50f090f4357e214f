"""Encode benchmark: clouds/s of the published encoders (ULIP-2 Point-BERT, OpenShape PointBERT) at real size.

What ``ulip2-encode`` and the eval do per batch: farthest-point centres, grouping, the network, in fp32
under inference mode, on random weights (speed does not depend on them). ``fps_share`` is the part of
the time spent choosing centres. Prints one JSON document.

Usage: python benchmarks/encode_bench.py [--device cpu|cuda] [--batch B] [--points N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from ulip2_pipeline.encoders.grouping import farthest_point_sample
from ulip2_pipeline.encoders.registry import build, named_config, prefix_points

MODELS = ("ulip2", "openshape_pointbert")


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clouds(batch: int, points: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    xyz = torch.randn(batch, points, 3, generator=generator)
    xyz = xyz / xyz.norm(dim=-1, keepdim=True)  # a shell: every point on the unit sphere
    return xyz.to(device), torch.rand(batch, points, 3, generator=generator).to(device)


@torch.inference_mode()
def one_model(name: str, device: torch.device, batch: int, points: int, repeats: int) -> dict:
    torch.manual_seed(0)
    config = named_config(name, 1280)
    encoder = build(config).to(device).eval()
    xyz, rgb = clouds(batch, points, device)
    encoder(xyz, rgb)  # warm-up
    synchronise(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(repeats):
        encoder(xyz, rgb)
    synchronise(device)
    seconds = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        farthest_point_sample(xyz, prefix_points(config), skip_near_origin=name == "ulip2")
    synchronise(device)
    fps_seconds = (time.perf_counter() - started) / repeats
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "model": name,
        "parameters_m": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 2),
        "clouds_per_s": round(batch / seconds, 2),
        "seconds_per_batch": round(seconds, 3),
        "fps_share": round(fps_seconds / seconds, 3),
        "peak_memory_gib": round(peak / 2**30, 2),
        "peak_memory_kind": "GPU allocated" if device.type == "cuda" else "process RSS",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 64 on GPU")
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=None, help="default: 2 on CPU, 10 on GPU")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch, repeats = args.batch or (64 if gpu else 2), args.repeats or (10 if gpu else 2)
    results = [one_model(name, device, batch, args.points, repeats) for name in args.models.split(",")]
    print(
        json.dumps(
            {
                "benchmark": "encode",
                "device": torch.cuda.get_device_name() if gpu else "cpu",
                "threads": torch.get_num_threads(),
                "batch": batch,
                "points": args.points,
                "precision": "fp32",
                "models": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
