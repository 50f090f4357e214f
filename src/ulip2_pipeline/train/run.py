"""Entry points of the train and eval rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.settings import ClipSettings, EvalSettings, TrainSettings
from ulip2_pipeline.train.benchmarks import read_benchmark
from ulip2_pipeline.train.pointbert import PointBert, PointBertConfig
from ulip2_pipeline.train.trainer import Trainer, encode_texts, frozen_towers
from ulip2_pipeline.train.zeroshot import class_embeddings, evaluate

log = logging.getLogger(__name__)


def run_training(
    triplet_paths, embed_paths, train: TrainSettings, embed: ClipSettings, up_axis: str, out_dir, model_out
) -> dict:
    trainer = Trainer(triplet_paths, embed_paths, train, embed, up_axis, out_dir)
    summary = trainer.train()
    trainer.save_model(model_out)
    return summary


def load_encoder(model_path, device: torch.device) -> PointBert:
    state = torch.load(model_path, map_location=device, weights_only=False)
    encoder = PointBert(PointBertConfig(**state["encoder_config"])).to(device)
    encoder.load_state_dict(state["encoder"])
    return encoder.eval()


def run_evaluation(
    model_path,
    settings: EvalSettings,
    embed: ClipSettings,
    num_points: int,
    holdout_fraction: float,
    triplet_paths,
    out,
) -> dict:
    """Zero-shot top-1 / top-5 / class-mean accuracy, per-class top-1 and the confusion matrix on every
    configured benchmark, into one JSON. ``num_points`` and ``holdout_fraction``: as the model was trained."""
    device = pick_device(settings.device)
    encoder = load_encoder(model_path, device)
    clip = frozen_towers(embed, device)
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
    report = {
        "model": str(model_path),
        "text_tower": f"{embed.arch}/{embed.pretrained}",
        "benchmarks": results,
    }
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    return report
