"""Entry points of the train and eval rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.train.benchmarks import read_benchmark
from ulip2_pipeline.train.pointbert import PointBert, PointBertConfig
from ulip2_pipeline.train.trainer import Trainer, encode_texts, frozen_towers
from ulip2_pipeline.train.zeroshot import class_embeddings, evaluate

log = logging.getLogger(__name__)


def run_training(
    triplet_paths, embed_paths, train_cfg: dict, embed_cfg: dict, up_axis: str, out_dir, model_out
) -> dict:
    trainer = Trainer(triplet_paths, embed_paths, train_cfg, embed_cfg, up_axis, out_dir)
    summary = trainer.train()
    trainer.save_model(model_out)
    return summary


def load_encoder(model_path, device: torch.device) -> PointBert:
    state = torch.load(model_path, map_location=device, weights_only=False)
    encoder = PointBert(PointBertConfig(**state["encoder_config"])).to(device)
    encoder.load_state_dict(state["encoder"])
    return encoder.eval()


def run_evaluation(model_path, eval_cfg: dict, embed_cfg: dict, train_cfg: dict, triplet_paths, out) -> dict:
    """Zero-shot top-1 / top-5 / class-mean accuracy, per-class top-1 and the confusion matrix on every
    configured benchmark, into one JSON."""
    device = pick_device(eval_cfg["device"])
    encoder = load_encoder(model_path, device)
    clip = frozen_towers(embed_cfg, device)
    results = {}
    for spec in eval_cfg["benchmarks"]:
        clouds, labels, classes = read_benchmark(
            spec, train_cfg["num_points"], triplet_paths, train_cfg["holdout_fraction"]
        )
        if not clouds:
            results[spec["name"]] = {"error": "no samples"}
            continue
        features = class_embeddings(lambda texts: encode_texts(clip, texts), classes)
        results[spec["name"]] = {
            **evaluate(encoder, clouds, labels, features, device, eval_cfg["batch_size"], class_names=classes),
            "format": spec["format"],
        }
        headline = {k: v for k, v in results[spec["name"]].items() if k not in ("confusion", "per_class_top1")}
        log.info("%s: %s", spec["name"], json.dumps(headline))
    report = {
        "model": str(model_path),
        "text_tower": f"{embed_cfg['arch']}/{embed_cfg['pretrained']}",
        "benchmarks": results,
    }
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    return report
