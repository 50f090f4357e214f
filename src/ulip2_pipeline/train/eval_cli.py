"""``ulip2-eval``: zero-shot accuracy of any checkpoint on benchmark files as published, as the eval rule scores it.

    ulip2-eval --checkpoint CKPT --format ulip2|openshape|ours --benchmark FORMAT:PATH[:SPLIT] ...

prints the JSON the eval rule writes to zero_shot.json (``--out`` also writes it). The text tower is
``embed`` of ``--config`` (default: the schema's, OpenCLIP ViT-bigG-14 / laion2b_s39b_b160k, the
tower ULIP-2 and OpenShape were trained against), encoded in fp32.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.config import default_config, validate_config
from ulip2_pipeline.encoders.checkpoints import FORMATS, CheckpointError
from ulip2_pipeline.settings import EmbedSettings, EvalSettings
from ulip2_pipeline.train.run import evaluation_report


def benchmark_spec(text: str) -> dict:
    """FORMAT:PATH[:SPLIT] -> a benchmark entry of eval.benchmarks, named after its format."""
    kind, _, rest = text.partition(":")
    if not kind or not rest:
        raise argparse.ArgumentTypeError(f"{text!r}: give FORMAT:PATH (e.g. modelnet40_ulip2:data/modelnet40)")
    path, _, split = rest.partition(":")
    return {"name": kind, "format": kind, "path": path, **({"split": split} if split else {})}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ulip2-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", required=True, choices=FORMATS, help="who wrote the checkpoint")
    parser.add_argument(
        "--benchmark", required=True, action="append", type=benchmark_spec, metavar="FORMAT:PATH[:SPLIT]"
    )
    parser.add_argument("--config", help="a config.yaml whose embed section names the text tower")
    parser.add_argument("--num-points", type=int, default=10000, help="points per cloud (default 10000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", help="also write the JSON here")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    names = [spec["name"] for spec in args.benchmark]
    for spec in args.benchmark:  # the same format twice: name them apart
        if names.count(spec["name"]) > 1:
            spec["name"] = f"{spec['name']}:{Path(spec['path']).name}"
    user = yaml.safe_load(Path(args.config).read_text()) if args.config else None
    sections = {"embed": user.get("embed", {})} if user else {}
    sections["eval"] = {
        "benchmarks": args.benchmark,
        "checkpoint": args.checkpoint,
        "checkpoint_format": args.format,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    try:
        config = validate_config(user | sections) if user else default_config(**sections)
        report = evaluation_report(
            args.checkpoint,
            EvalSettings.from_config(config["eval"]),
            EmbedSettings.from_config(config["embed"]),
            args.num_points,
        )
    except (CheckpointError, ValueError, OSError) as exc:
        sys.exit(f"ulip2-eval: {exc}")
    text = json.dumps(report, indent=2)
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
