"""Embed benchmark: objects/s of the embed stage's work (12 views and 12 kept captions per object) with
OpenCLIP ViT-bigG-14 (ULIP-2's and OpenShape's frozen tower) built from open_clip's own config, random weights.

Per object, as ``stages/embed.py`` does: decode and preprocess each view's PNG, encode the views and the
captions, normalise. ``--tiny`` runs the same code on the stand-in's sizes (CPU smoke test). Prints JSON.

Usage: python benchmarks/embed_bench.py [--device cpu|cuda] [--objects N] [--precision auto|fp32|fp16|bf16] [--tiny]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caption_rank_bench import synthetic_views  # noqa: E402

from ulip2_pipeline.models.clip import load_clip  # noqa: E402
from ulip2_pipeline.models.real_models import CLIP_EMBED, CLIP_TINY_SIZES, clip_arch_config  # noqa: E402
from ulip2_pipeline.stages.embed import _encode_images, _encode_texts  # noqa: E402

VIEWS = 12


def pngs(count: int) -> list[bytes]:
    out = []
    for image in synthetic_views(count):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--objects", type=int, default=None, help="default: 64 on GPU, 2 on CPU")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--tiny", action="store_true", help="the stand-in's sizes (runs anywhere)")
    args = parser.parse_args()
    device = torch.device(args.device)
    objects = args.objects or (64 if device.type == "cuda" else 2)
    with tempfile.TemporaryDirectory() as tmp:
        name = "bench-ViT-bigG-14" + ("-tiny" if args.tiny else "")
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(clip_arch_config(CLIP_EMBED, CLIP_TINY_SIZES if args.tiny else None)))
        started = time.perf_counter()
        clip = load_clip(name, None, str(path), device, args.precision)
        build_s = time.perf_counter() - started
    images = pngs(objects * VIEWS)
    captions = [f"a 3d model of object {i}, seen from view {i % VIEWS}" for i in range(objects * VIEWS)]

    def one_pass():
        _encode_images(clip, images)
        _encode_texts(clip, captions)
        if device.type == "cuda":
            torch.cuda.synchronize()

    one_pass()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    one_pass()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "embed",
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "tower": "ViT-bigG-14 (random weights)" + (" at the stand-in's sizes" if args.tiny else ""),
                "params_m": round(sum(p.numel() for p in clip.model.parameters()) / 1e6, 1),
                "dtype": str(clip.dtype),
                "build_s": round(build_s, 1),
                "objects": objects,
                "views_per_object": VIEWS,
                "objects_per_s": round(objects / seconds, 2),
                "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
                if device.type == "cuda"
                else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
