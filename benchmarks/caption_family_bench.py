"""Caption benchmark per captioner family at real size: images/s and peak memory through the family's own loop.

Each family is built from the same real configuration as its stand-in, with random weights, directly on the
device in the caption stage's dtype (bf16 on a GPU), and captions synthetic 224 px views through
``Captioner.caption``: 10 nucleus-sampled captions per image of exactly 20 new tokens (``min_new_tokens`` =
``max_new_tokens``), so every family does the same work. ``--tiny`` builds the stand-ins' sizes (CPU smoke test).

Usage: python benchmarks/caption_family_bench.py --family blip2-t5|instructblip-vicuna|instructblip-t5|chat-vlm
       [--batches 16,32] [--images N] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caption_rank_bench import synthetic_views  # noqa: E402

from ulip2_pipeline.models.blip2 import GenerationSettings, caption_dtype  # noqa: E402

FAMILIES = ("blip2-t5", "instructblip-vicuna", "instructblip-t5", "chat-vlm")


def blip2_t5_captioner(device: torch.device, dtype: torch.dtype, tiny: bool):
    """BLIP-2 Flan-T5-XL from the real configuration (random weights) on ``device`` in ``dtype``, the stand-in's processor."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, GenerationConfig

    from ulip2_pipeline.models import tiny_models
    from ulip2_pipeline.models.blip2 import end_tokens, vision_dtype
    from ulip2_pipeline.models.captioners import Captioner
    from ulip2_pipeline.models.real_models import BLIP2_T5_GENERATION_CONFIG, BLIP2_T5_TINY_SIZES, blip2_t5_config

    config = Blip2Config.from_dict(blip2_t5_config(BLIP2_T5_TINY_SIZES if tiny else None))
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Blip2ForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    model.to(dtype)
    model.qformer.float()  # from_pretrained keeps the Q-Former and its queries in fp32
    model.query_tokens.data = model.query_tokens.data.float()
    model.generation_config = GenerationConfig(**BLIP2_T5_GENERATION_CONFIG)
    with tempfile.TemporaryDirectory() as folder:
        processor = Blip2Processor.from_pretrained(tiny_models.build_tiny_blip2_t5(Path(folder) / "t5"))
    return Captioner(
        "blip2-t5", "random Salesforce/blip2-flan-t5-xl", model, processor, vision_dtype(model), end_tokens(model)
    )


def build(family: str, device: torch.device, dtype: torch.dtype, tiny: bool):
    if family == "blip2-t5":
        return blip2_t5_captioner(device, dtype, tiny)
    if family.startswith("instructblip-"):
        from ulip2_pipeline.models import instructblip

        return instructblip.benchmark_captioner(device, dtype, tiny, family.removeprefix("instructblip-"))
    if family == "chat-vlm":
        from ulip2_pipeline.models import chat_vlm

        return chat_vlm.benchmark_captioner(device, dtype, tiny)
    raise SystemExit(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--batches", default="16,32", help="batch sizes, e.g. 16,32")
    parser.add_argument("--images", type=int, default=64, help="images timed per batch size (at least one batch)")
    parser.add_argument("--tiny", action="store_true", help="the stand-ins' sizes (runs on a CPU)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = caption_dtype("auto", device)
    started = time.perf_counter()
    captioner = build(args.family, device, dtype, args.tiny)
    build_s = time.perf_counter() - started
    settings = GenerationSettings(num_captions=10, max_new_tokens=20, min_new_tokens=20)
    per_batch = []
    for batch in [int(b) for b in args.batches.split(",")]:
        views = synthetic_views(batch)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

        def one_round():
            captions = captioner.caption(views, list(range(batch)), settings)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return captions

        one_round()  # warm-up
        seconds = []
        for _ in range(max(1, args.images // batch)):
            begun = time.perf_counter()
            one_round()
            seconds.append(time.perf_counter() - begun)
        per_batch.append(
            {
                "batch": batch,
                "images_per_s": round(batch / statistics.median(seconds), 2),
                "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
                if device.type == "cuda"
                else None,
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "caption_family",
                "family": captioner.family,
                "model": captioner.model_id,
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "tiny_smoke_test": args.tiny,
                "params_b": round(sum(p.numel() for p in captioner.model.parameters()) / 1e9, 3),
                "dtype": str(captioner.dtype),
                "prompt_used": captioner.prompt(settings),
                "captions_per_image": 10,
                "new_tokens_per_caption": 20,
                "build_s": round(build_s, 1),
                "batches": per_batch,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
