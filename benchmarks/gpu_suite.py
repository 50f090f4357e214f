"""The GPU suite: every stage's GPU figure in one command, one JSON document.

Parts, each its own process with its own time limit (so one failing or slow part leaves the others):
- caption_rank: BLIP-2 OPT-6.7B and CLIP ViT-L/14 at real size (random weights, 10 captions x exactly
  20 new tokens per image) at the caption stage's default batch size and twice it: images/s captioned,
  views/s ranked, peak memory;
- caption_<family>: the other captioner families (BLIP-2 Flan-T5-XL, InstructBLIP Vicuna-7B and
  Flan-T5-XL, Qwen2.5-VL-7B) the same way through their own loops: images/s and peak memory;
- embed: ViT-bigG-14 objects/s (12 views and 12 captions per object);
- encode: ULIP-2 Point-BERT and OpenShape PointBERT clouds/s at 10k points (ulip2-encode, eval);
- train: ULIP-2 and OpenShape encoder training samples/s (bf16 autocast);
- render: Cycles on the GPU, seconds per object, when bpy is installed (it is about 1 GB and does not
  travel to a lent GPU machine, so there the part says it was skipped and why).

``--smoke`` runs every part on the CPU with the stand-ins' sizes in about a minute (a test runs it).

Usage: python benchmarks/gpu_suite.py [--smoke] [--budget-s SECONDS]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def caption_batch_size() -> int:
    from ulip2_pipeline.config import default_config

    return default_config()["caption"]["batch_size"]


def parts(smoke: bool) -> dict[str, list[str] | str]:
    """Part name -> the benchmark's command line, or why it is skipped."""
    batch = caption_batch_size()
    families = ("blip2-t5", "instructblip-vicuna", "instructblip-t5", "chat-vlm")
    if smoke:
        return {
            "caption_rank": ["caption_rank_bench.py", "--real-size", "--tiny", "--images", "2", "--batches", "1,2"],
            **{
                f"caption_{family}": ["caption_family_bench.py", "--family", family, "--tiny"]
                + ["--batches", "1,2", "--images", "2"]
                for family in families
            },
            "embed": ["embed_bench.py", "--tiny", "--device", "cpu", "--objects", "1"],
            "encode": ["encode_bench.py", "--device", "cpu", "--batch", "1", "--points", "1024", "--repeats", "1"],
            "train": ["train_bench.py", "--device", "cpu", "--sizes", "tiny,openshape_tiny"]
            + ["--batch", "4", "--points", "512", "--steps", "1"],
            "render": "smoke run: the render tests cover Cycles on the CPU",
        }
    return {
        "caption_rank": ["caption_rank_bench.py", "--real-size", "--images", str(2 * batch)]
        + ["--batches", f"{batch},{2 * batch}"],
        **{
            f"caption_{family}": ["caption_family_bench.py", "--family", family]
            + ["--batches", f"{batch},{2 * batch}", "--images", str(2 * batch)]
            for family in families
        },
        "embed": ["embed_bench.py", "--device", "cuda", "--objects", "64"],
        "encode": ["encode_bench.py", "--device", "cuda", "--batch", "64", "--repeats", "5"],
        "train": ["train_bench.py", "--device", "cuda", "--sizes", "ulip2,openshape_pointbert", "--steps", "5"],
        "render": ["render_bench.py", "--device", "gpu", "--sizes", "224"]
        if importlib.util.find_spec("bpy")
        else "bpy is not installed here (about 1 GB; it cannot travel to a lent GPU machine)",
    }


def last_json(stdout: str) -> dict:
    """The JSON document a benchmark prints last (from the last line that opens one)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("{")]
    for start in reversed(starts):
        try:
            return json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
    raise ValueError("printed no JSON document")


def run_part(command: list[str], timeout_s: float) -> dict:
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, str(HERE / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"ran past its {timeout_s:.0f} s limit"}
    seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {result.returncode}: " + " | ".join(tail), "wall_s": seconds}
    try:
        return {**last_json(result.stdout), "wall_s": seconds}
    except ValueError as exc:
        return {"error": str(exc), "wall_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the stand-ins on the CPU (a test)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="the whole suite's time (default 8 minutes)")
    parser.add_argument("--only", help="comma-separated part names")
    args = parser.parse_args()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no GPU visible; use --smoke for the CPU stand-in run")
    plan = parts(args.smoke)
    if args.only:
        plan = {name: plan[name] for name in args.only.split(",")}
    started = time.perf_counter()
    results = {}
    share = {"caption_rank": 0.2, "embed": 0.08, "encode": 0.08, "train": 0.12, "render": 0.08}
    for name, command in plan.items():
        if isinstance(command, str):
            results[name] = {"skipped": command}
            continue
        left = args.budget_s - (time.perf_counter() - started)
        results[name] = run_part(command, max(30.0, min(left, share.get(name, 0.11) * args.budget_s * 2)))
        print(f"gpu_suite: {name} done: {json.dumps(results[name])[:300]}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "suite": "gpu",
                "smoke": args.smoke,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "wall_s": round(time.perf_counter() - started, 1),
                "parts": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
