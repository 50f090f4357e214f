"""Caption and rank benchmark. Prints one JSON document.

CPU (default): per-image cost of both stages with the tiny stand-ins (the real
configurations with sizes shrunk), through the stage code (model load reported separately).

GPU (--real-size): builds BLIP-2 OPT-6.7B (ViT-g/14, Q-Former, OPT-6.7B) and CLIP
ViT-L/14 from the same real configurations as the stand-ins, at full size, with
random weights, and runs them the way the stages do: BLIP-2 in bf16 with the
checkpoint's end token (the newline), CLIP in fp16 with QuickGELU and its pixels
cast to the tower's dtype. Reports images/s for 10 captions x exactly 20 new tokens,
and views ranked/s. Add --tiny to run the same code path with the stand-ins' sizes
(a smoke test without a GPU; --caption-precision bfloat16 --clip-precision fp16
smoke-tests the GPU numerics on the CPU).

Usage: python benchmarks/caption_rank_bench.py [--real-size [--tiny] [--batches B1,B2]] [--images N] [--batch B]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    caption_batch,
    caption_dtype,
    end_tokens,
    load_captioner,
    pad_token,
    sample_caption_tokens,
    vision_dtype,
)
from ulip2_pipeline.models.clip import load_clip, score_views
from ulip2_pipeline.models.real_models import (
    BLIP2_GENERATION_CONFIG,
    BLIP2_TINY_SIZES,
    CLIP_RANK,
    CLIP_TINY_SIZES,
    blip2_config,
    clip_arch_config,
)
from ulip2_pipeline.models.tiny_models import build_tiny_blip2, build_tiny_clip, sharpen_next_token_distribution


def synthetic_views(count: int, size: int = 224) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        pixels = np.full((size, size, 3), 255, np.uint8)
        x0, y0 = rng.integers(20, size // 2, 2)
        pixels[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.integers(0, 255, 3)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        images.append(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    return images


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cpu_benchmark(images: int, batch: int) -> dict:
    torch.set_num_threads(1)
    views = synthetic_views(images)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        blip2 = build_tiny_blip2(Path(tmp) / "blip2")
        clip_spec = build_tiny_clip(Path(tmp) / "clip", CLIP_RANK)
        load_caption_s, (model, processor) = timed(lambda: load_captioner(str(blip2), cpu))
        settings = GenerationSettings()
        caption_s, captions = timed(
            lambda: run_in_batches(
                list(range(images)),
                lambda idx: caption_batch(model, processor, [views[i] for i in idx], list(idx), settings),
                batch,
            )
        )
        load_rank_s, clip = timed(
            lambda: load_clip(clip_spec["arch"], clip_spec["pretrained"], clip_spec["arch_config"], cpu)
        )
        rank_s, _ = timed(
            lambda: run_in_batches(
                list(range(images)),
                lambda idx: list(score_views(clip, [views[i] for i in idx], [captions[i] for i in idx])),
                batch,
            )
        )
    return {
        "benchmark": "caption_rank",
        "device": "cpu",
        "threads": 1,
        "models": "tiny stand-ins (real configs, sizes shrunk; random weights)",
        "images": images,
        "batch": batch,
        "captions_per_image": 10,
        "max_new_tokens": 30,
        "caption_dtype": str(vision_dtype(model)),
        "caption_end_tokens": end_tokens(model),
        "clip_dtype": str(clip.dtype),
        "clip_activation": clip.activation,
        "caption_model_load_s": round(load_caption_s, 2),
        "caption_ms_per_image": round(1000 * caption_s / images, 2),
        "rank_model_load_s": round(load_rank_s, 2),
        "rank_ms_per_view": round(1000 * rank_s / images, 2),
    }


def real_size_blip2(tiny: bool, device: torch.device, dtype: torch.dtype):
    """BLIP-2 OPT-6.7B from the real configuration (random weights), built directly on ``device`` in ``dtype``."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, GenerationConfig

    config = Blip2Config.from_dict(blip2_config(BLIP2_TINY_SIZES if tiny else None))
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Blip2ForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    model.to(dtype)  # the text config's torch_dtype (float16) would otherwise win over the default dtype
    model.qformer.float()  # from_pretrained keeps the Q-Former and its queries in fp32 (_keep_in_fp32_modules)
    model.query_tokens.data = model.query_tokens.data.float()
    model.generation_config = GenerationConfig(**BLIP2_GENERATION_CONFIG)  # what from_pretrained reads from the hub
    sharpen_next_token_distribution(model)  # a trained captioner's small top-p set, not 50k near-equal tokens
    return model


def real_size_clip(tiny: bool, device: torch.device, precision: str, workdir: Path):
    """CLIP ViT-L/14 (QuickGELU, as OpenAI's weights) from open_clip's own config, through ``load_clip``."""
    name = "bench-ViT-L-14-quickgelu" + ("-tiny" if tiny else "")
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(clip_arch_config(CLIP_RANK, CLIP_TINY_SIZES if tiny else None)))
    return load_clip(name, None, str(path), device, precision)


def gpu_benchmark(images: int, batches: list[int], tiny: bool, caption_precision: str, clip_precision: str) -> dict:
    """The real-size models built once, then captioned and ranked at each batch size of ``batches``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = caption_dtype(caption_precision, device)
    build_s, model = timed(lambda: real_size_blip2(tiny, device, dtype))
    with tempfile.TemporaryDirectory() as tmp:
        clip = real_size_clip(tiny, device, clip_precision, Path(tmp))
    settings = GenerationSettings(num_captions=10, max_new_tokens=20, min_new_tokens=20)
    bos = torch.tensor([BLIP2_GENERATION_CONFIG["bos_token_id"]], device=device)
    eos_ids = end_tokens(model)
    pad_id = pad_token(model, None)
    per_batch = []
    for batch in batches:
        pixels = torch.randn(batch, 3, 224, 224, device=device).to(vision_dtype(model))
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

        def caption_round():
            tokens = sample_caption_tokens(model, pixels, bos, list(range(batch)), settings, eos_ids, pad_id)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return tokens

        caption_round()  # warm-up
        rounds = max(1, images // batch)
        seconds = [timed(caption_round)[0] for _ in range(rounds)]
        tokens = caption_round()
        views = synthetic_views(batch)
        texts = [[f"a 3d render of object {i} number {j}" for j in range(10)] for i in range(batch)]
        score_views(clip, views, texts)
        rank_seconds = [timed(lambda: score_views(clip, views, texts))[0] for _ in range(rounds)]
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        per_batch.append(
            {
                "batch": batch,
                "new_tokens_per_caption": int((tokens[: batch * 10] != pad_id).sum(dim=1).float().mean()),
                "images_per_s": round(batch / statistics.median(seconds), 2),
                "views_ranked_per_s": round(batch / statistics.median(rank_seconds), 2),
                "peak_gpu_memory_gib": round(peak, 1) if peak else None,
            }
        )
    return {
        "benchmark": "caption_rank_real_size",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "family": "blip2-opt",
        "tiny_smoke_test": tiny,
        "blip2_params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "caption_dtype": str(vision_dtype(model)),
        "caption_end_tokens": eos_ids,
        "clip_params_m": round(sum(p.numel() for p in clip.model.parameters()) / 1e6, 1),
        "clip_dtype": str(clip.dtype),
        "clip_activation": clip.activation,
        "build_s": round(build_s, 1),
        "captions_per_image": 10,
        "batches": per_batch,
        "goal": ">= 100 images/s captioned on one H100",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="with --real-size: the stand-ins' sizes, runs anywhere")
    parser.add_argument("--caption-precision", default="auto", help="auto (bf16 on GPU), float32, bfloat16, float16")
    parser.add_argument("--clip-precision", default="auto", help="auto (fp16 on GPU), fp32, fp16, bf16")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", help="with --real-size: several batch sizes, e.g. 32,64 (default: --batch)")
    args = parser.parse_args()
    if args.real_size:
        batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
        result = gpu_benchmark(args.images, batches, args.tiny, args.caption_precision, args.clip_precision)
    else:
        result = cpu_benchmark(args.images, args.batch)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
