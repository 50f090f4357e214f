"""Caption and rank benchmark. Prints one JSON document.

CPU (default): per-image cost of both stages with the tiny offline models, through
the stage code (model load reported separately).

GPU (--real-size): builds the published BLIP-2 OPT-6.7B architecture (ViT-g/14,
Q-Former, OPT-6.7B; random weights, bf16) and CLIP ViT-L/14 (random, fp16), then
reports images/s for 10 captions x exactly 20 new tokens, and views ranked/s.
Add --tiny to run the same code path with small configs (a smoke test without a GPU).

Usage: python benchmarks/caption_rank_bench.py [--real-size [--tiny]] [--images N] [--batch B]
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

from ulip2_pipeline.caption.blip2 import GenerationSettings, caption_batch, load_captioner, sample_caption_tokens
from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.rank.clip import Clip, load_clip, score_views
from ulip2_pipeline.tiny_models import build_tiny_blip2, build_tiny_clip


def synthetic_views(count: int, size: int = 224) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        pixels = np.full((size, size, 3), 255, np.uint8)
        x0, y0 = rng.integers(20, size // 2, 2)
        pixels[y0:y0 + size // 3, x0:x0 + size // 3] = rng.integers(0, 255, 3)
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
    with tempfile.TemporaryDirectory() as tmp:
        blip2 = build_tiny_blip2(Path(tmp) / "blip2")
        clip_spec = build_tiny_clip(Path(tmp) / "clip")
        load_caption_s, (model, processor) = timed(lambda: load_captioner(str(blip2), torch.device("cpu")))
        settings = GenerationSettings()
        caption_s, captions = timed(lambda: run_in_batches(
            list(range(images)), lambda idx: caption_batch(model, processor, [views[i] for i in idx], list(idx),
                                                           settings), batch))
        load_rank_s, clip = timed(lambda: load_clip(clip_spec["arch"], clip_spec["pretrained"],
                                                    clip_spec["arch_config"], torch.device("cpu")))
        rank_s, _ = timed(lambda: run_in_batches(
            list(range(images)), lambda idx: list(score_views(clip, [views[i] for i in idx],
                                                              [captions[i] for i in idx])), batch))
    return {"benchmark": "caption_rank", "device": "cpu", "threads": 1, "models": "tiny (random)",
            "images": images, "batch": batch, "captions_per_image": 10, "max_new_tokens": 30,
            "caption_model_load_s": round(load_caption_s, 2), "caption_ms_per_image": round(1000 * caption_s / images, 2),
            "rank_model_load_s": round(load_rank_s, 2), "rank_ms_per_view": round(1000 * rank_s / images, 2)}


def real_size_blip2(tiny: bool):
    from transformers import Blip2Config, Blip2ForConditionalGeneration, OPTConfig

    if tiny:
        vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "image_size": 224, "patch_size": 14}
        qformer = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                   "encoder_hidden_size": 64, "cross_attention_frequency": 2}
        text = OPTConfig(vocab_size=50272, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                         word_embed_proj_dim=64)
    else:  # published dimensions: EVA ViT-g/14, BERT-base Q-Former, OPT-6.7B
        vision = {"hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39, "num_attention_heads": 16,
                  "image_size": 224, "patch_size": 14, "qkv_bias": True}
        qformer = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                   "encoder_hidden_size": 1408, "cross_attention_frequency": 2}
        text = OPTConfig(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, ffn_dim=16384,
                         num_attention_heads=32, word_embed_proj_dim=4096, max_position_embeddings=2048)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                         num_query_tokens=32, image_token_index=50265)
    return Blip2ForConditionalGeneration(config)


def gpu_benchmark(images: int, batch: int, tiny: bool) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):
        build_s, model = timed(lambda: real_size_blip2(tiny).eval())
    torch.set_default_dtype(torch.float32)
    import open_clip

    arch = "ViT-B-32" if tiny else "ViT-L-14"
    precision = "fp16" if device.type == "cuda" else "fp32"
    clip_model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device,
                                                                      precision=precision)
    clip = Clip(clip_model.eval(), preprocess, open_clip.get_tokenizer(arch), device)
    settings = GenerationSettings(num_captions=10, max_new_tokens=20, min_new_tokens=20)
    pixels = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    prompt = torch.tensor([2], device=device)

    def caption_round():
        tokens = sample_caption_tokens(model, pixels, prompt, list(range(batch)), settings, eos_id=2, pad_id=1)
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
    return {"benchmark": "caption_rank_real_size", "device": torch.cuda.get_device_name() if device.type == "cuda"
            else "cpu", "tiny_smoke_test": tiny, "blip2_params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
            "build_s": round(build_s, 1), "batch": batch, "captions_per_image": 10,
            "new_tokens_per_caption": int((tokens[:batch * 10] != 1).sum(dim=1).float().mean()),
            "images_per_s": round(batch / statistics.median(seconds), 2),
            "views_ranked_per_s": round(batch / statistics.median(rank_seconds), 2),
            "peak_gpu_memory_gib": round(peak, 1) if peak else None,
            "goal": ">= 100 images/s captioned on one H100"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="with --real-size: small configs, runs anywhere")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    result = gpu_benchmark(args.images, args.batch, args.tiny) if args.real_size else cpu_benchmark(args.images, args.batch)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
