"""Training benchmark: samples/s and peak memory of Point-BERT steps against precomputed embeddings.

Each size runs in its own process (so peak memory is its own): forward, ULIP loss
against precomputed (random) image and text embeddings, backward, AdamW step.
CPU by default; --device cuda runs the same on a GPU with bf16 autocast.
Prints one JSON document.

Usage: python benchmarks/train_bench.py [--device cpu|cuda] [--sizes tiny,ulip2] [--batch B] [--points N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def one_size(size: str, device: str, batch: int, points: int, steps: int, embed_dim: int) -> dict:
    from ulip2_pipeline.encoders.registry import build, named_config
    from ulip2_pipeline.train.loss import UlipLoss
    from ulip2_pipeline.train.trainer import parameter_groups

    torch.manual_seed(0)
    dev = torch.device(device)
    encoder = build(named_config(size, embed_dim)).to(dev)
    loss = UlipLoss().to(dev)
    optimizer = torch.optim.AdamW(
        parameter_groups(torch.nn.ModuleDict({"e": encoder, "l": loss}), 0.1), lr=3e-3, betas=(0.9, 0.98)
    )
    xyz, rgb = torch.randn(batch, points, 3, device=dev), torch.rand(batch, points, 3, device=dev)
    image, text = torch.randn(batch, embed_dim, device=dev), torch.randn(batch, embed_dim, device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            features = encoder(xyz, rgb)
        loss(features, image, text)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated()
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "size": size,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "batch": batch,
        "points": points,
        "steps": steps,
        "parameters_m": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 2),
        "samples_per_s": round(batch * steps / seconds, 1),
        "peak_memory_gib": round(peak / 2**30, 2),
        "peak_memory_kind": "GPU allocated" if dev.type == "cuda" else "process RSS",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="tiny,ulip2")
    parser.add_argument("--batch", type=int, default=None, help="default: 16 on CPU, 256 on GPU")
    parser.add_argument("--points", type=int, default=None, help="default: 2048 on CPU, 10000 on GPU")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--embed-dim", type=int, default=1280, help="the CLIP width (ViT-bigG-14: 1280)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    batch = args.batch or (256 if gpu else 16)
    points = args.points or (10000 if gpu else 2048)
    steps = args.steps or (20 if gpu else 3)
    if args.one:
        print(json.dumps(one_size(args.one, args.device, batch, points, steps, args.embed_dim)))
        return
    results = []
    for size in args.sizes.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                size,
                "--device",
                args.device,
                "--batch",
                str(batch),
                "--points",
                str(points),
                "--steps",
                str(steps),
                "--embed-dim",
                str(args.embed_dim),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "benchmark": "train",
                "towers": "precomputed embeddings",
                "results": results,
                "goal": ">= 1000 samples/s for the ULIP-2 size on one H100",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
