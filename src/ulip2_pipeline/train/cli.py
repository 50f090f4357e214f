"""``ulip2-train`` (or ``python -m ulip2_pipeline.train``): train outside Snakemake.

    ulip2-train --config config.yaml --dataset demo [--gpus 2] [--set train.epochs=50 ...]

reads the dataset's triplet and embedding shards from results/ (or --triplets /
--embed), writes model.pt, metrics.json, the curve and checkpoint.pt to
results/{dataset}/train/{run}/ (or --out), and resumes there when the run's
fingerprint matches. ``--job job.json`` runs one rank of a launched job (what
torchrun starts).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import yaml

from ulip2_pipeline import paths
from ulip2_pipeline.config import SCHEMA_PATH, validate_config
from ulip2_pipeline.records import RawConfig
from ulip2_pipeline.settings import EmbedSettings, TrainSettings
from ulip2_pipeline.train.launch import TrainJob, launch, run_rank
from ulip2_pipeline.workflow import log_to


def _override(config: RawConfig, assignment: str) -> None:
    """``section.key=value`` (value parsed as YAML) into ``config``."""
    dotted, _, value = assignment.partition("=")
    *parents, key = dotted.split(".")
    target = config
    for name in parents:
        target = target.setdefault(name, {})
    target[key] = yaml.safe_load(value)


def job_from_config(args) -> TrainJob:
    config = yaml.safe_load(Path(args.config).read_text())
    for assignment in args.set:
        _override(config, assignment)
    if args.gpus is not None:
        config.setdefault("train", {})["gpus"] = args.gpus
    validate_config(config, args.schema)
    datasets = sorted(config["datasets"])
    dataset = args.dataset or (datasets[0] if len(datasets) == 1 else None)
    if dataset not in config["datasets"]:
        raise SystemExit(f"--dataset: give one of {', '.join(datasets)}")
    train, embed = config["train"], config["embed"]
    shard_pattern = paths.under(args.results, paths.TRIPLETS, dataset=dataset)
    triplets = args.triplets or sorted(str(p) for p in shard_pattern.parent.glob("*.parquet"))
    if not triplets:
        raise SystemExit(f"no triplet shards under {shard_pattern.parent}; build them or pass --triplets")
    embeds = args.embed or [
        str(paths.under(args.results, paths.EMBED, dataset=dataset, model=embed["name"], shard=Path(p).stem))
        for p in triplets
    ]
    out_dir = Path(args.out or paths.under(args.results, paths.TRAIN_RUN, dataset=dataset, run=train["run"]))
    return TrainJob(
        triplets=list(triplets),
        embed=list(embeds),
        train=TrainSettings.from_config(train),
        embed_settings=EmbedSettings.from_config(embed),
        up_axis=config["datasets"][dataset]["up_axis"],
        out_dir=str(out_dir),
        model=str(out_dir / "model.pt"),
        log=str(out_dir / "train.log"),
    )


def _label_rank(rank: str) -> None:
    formatter = logging.Formatter(f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ulip2-train", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="the workflow's config.yaml")
    source.add_argument("--job", help="a job file written by the launcher (one rank of it)")
    parser.add_argument("--dataset", help="which dataset of the config (default: the only one)")
    parser.add_argument("--results", default="results", help="the results folder (default: ./results)")
    parser.add_argument("--triplets", nargs="+", help="triplet shards (default: results/{dataset}/triplets/*)")
    parser.add_argument("--embed", nargs="+", help="embedding shards, one per triplet shard, in the same order")
    parser.add_argument("--out", help="run folder (default: results/{dataset}/train/{train.run})")
    parser.add_argument("--gpus", type=int, help="ranks to run (default: train.gpus)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.epochs=50 (repeatable)",
    )
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help="config.schema.yaml (default: the package's)")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    job = TrainJob.read(args.job) if args.job else job_from_config(args)
    log_to(job.log)
    if "RANK" in os.environ:
        _label_rank(os.environ["RANK"])
    if args.job:
        run_rank(job)
    else:
        launch(job)


if __name__ == "__main__":
    main()
