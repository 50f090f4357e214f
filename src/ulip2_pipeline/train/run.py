"""Entry points of the train and eval rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.encoders.checkpoints import load_encoder
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.settings import ClipSettings, EvalSettings, TrainSettings
from ulip2_pipeline.train.benchmarks import read_benchmark
from ulip2_pipeline.train.retrieval import heldout_retrieval
from ulip2_pipeline.train.trainer import Trainer, encode_texts, frozen_towers
from ulip2_pipeline.train.zeroshot import class_embeddings, evaluate

log = logging.getLogger(__name__)


def run_training(
    triplet_paths,
    embed_paths,
    train: TrainSettings,
    embed: ClipSettings,
    up_axis: str,
    out_dir,
    model_out,
    quality: QualityFilter | None = None,
) -> dict:
    trainer = Trainer(triplet_paths, embed_paths, train, embed, up_axis, out_dir, quality)
    summary = trainer.train()
    trainer.save_model(model_out)
    return summary


def evaluation_towers(embed: ClipSettings, device: torch.device):
    """The frozen CLIP for class prompts, in fp32 whatever the embed stage used (ULIP evaluates its text
    tower in fp32; fp16 class features move scores by a few tenths of a point)."""
    return frozen_towers(embed.replace(precision="fp32"), device)


def score(
    encoder,
    settings: EvalSettings,
    clip,
    num_points: int,
    holdout_fraction: float,
    triplet_paths=(),
    embed_paths=None,
) -> dict:
    """Zero-shot results on every benchmark of ``settings`` and, given embedding shards, held-out retrieval."""
    device = clip.device
    results = {}
    for spec in settings.benchmarks:
        clouds, labels, classes = read_benchmark(spec, num_points, triplet_paths, holdout_fraction)
        if not clouds:
            results[spec["name"]] = {"error": "no samples"}
            continue
        features = class_embeddings(lambda texts: encode_texts(clip, texts), classes)
        results[spec["name"]] = {
            **evaluate(encoder, clouds, labels, features, device, settings.batch_size, class_names=classes),
            "format": spec["format"],
        }
        headline = {k: v for k, v in results[spec["name"]].items() if k not in ("confusion", "per_class_top1")}
        log.info("%s: %s", spec["name"], json.dumps(headline))
    report = {"benchmarks": results}
    if embed_paths:
        report["retrieval"] = heldout_retrieval(
            encoder, triplet_paths, embed_paths, holdout_fraction, num_points, device, settings.batch_size
        )
        log.info("held-out retrieval: %s", json.dumps(report["retrieval"]))
    return report


def evaluation_report(
    model_path,
    settings: EvalSettings,
    embed: ClipSettings,
    num_points: int,
    holdout_fraction: float = 0.0,
    triplet_paths=(),
    embed_paths=None,
) -> dict:
    """Zero-shot top-1 / top-5 / class-mean accuracy, per-class top-1 and the confusion matrix on every
    configured benchmark and, given embedding shards, held-out 3D->text / 3D->image retrieval, for the
    checkpoint ``model_path`` (written by ``settings.checkpoint_format``). ``num_points`` and
    ``holdout_fraction``: as the model was trained."""
    device = pick_device(settings.device)
    encoder = load_encoder(model_path, settings.checkpoint_format, device)
    clip = evaluation_towers(embed, device)
    return {
        "model": str(model_path),
        "checkpoint_format": settings.checkpoint_format,
        "text_tower": embed.model_name,
        "text_precision": "fp32",
        **score(encoder, settings, clip, num_points, holdout_fraction, triplet_paths, embed_paths),
    }


def run_evaluation(
    model_path,
    settings: EvalSettings,
    embed: ClipSettings,
    num_points: int,
    holdout_fraction: float,
    triplet_paths,
    out,
    embed_paths=None,
) -> dict:
    """The eval rule: ``evaluation_report`` into ``out`` (zero_shot.json), written atomically."""
    report = evaluation_report(model_path, settings, embed, num_points, holdout_fraction, triplet_paths, embed_paths)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    return report
