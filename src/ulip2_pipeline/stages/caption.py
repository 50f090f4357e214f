"""The caption stage: every rendered view of a shard gets n BLIP-2 captions."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from ulip2_pipeline import __version__
from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.failures import write_failures
from ulip2_pipeline.models.blip2 import (
    GenerationSettings,
    caption_batch,
    clean_caption,
    end_tokens,
    load_captioner,
    vision_dtype,
)
from ulip2_pipeline.stages.model_stage import numerics_metadata, process_views
from ulip2_pipeline.stages.views import read_views, view_seed

log = logging.getLogger(__name__)

STAGE = "caption"
SCHEMA_VERSION = "1"

CAPTIONS_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("view", pa.int16(), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("empty_captions", pa.int16()),
        pa.field("model", pa.string()),
        pa.field("seed", pa.int64()),
    ]
)


def generation_settings(cfg: dict) -> GenerationSettings:
    return GenerationSettings(
        num_captions=cfg["num_captions"],
        top_p=cfg["top_p"],
        max_new_tokens=cfg["max_new_tokens"],
        temperature=cfg["temperature"],
        prompt=cfg["prompt"] or "",
        do_sample=cfg.get("do_sample", True),
    )


def run_caption_shard(
    render_path: str | Path, shard: str, cfg: dict, out: str | Path, failures_out: str | Path
) -> dict:
    """Caption every decodable view of the render shard; corrupt PNGs and views the model fails on
    (alone) become failure rows. A shard without views writes an empty output and loads no model."""
    started = time.perf_counter()
    views, failures = read_views(render_path, STAGE)
    settings = generation_settings(cfg)
    precision = cfg.get("precision", "auto")
    rows, device, dtype, end_ids = [], None, None, None
    if views:
        device = pick_device(cfg["device"])
        model, processor = load_captioner(cfg["model"], device, precision)
        dtype, end_ids = vision_dtype(model), end_tokens(model)
        log.info(
            "loaded %s on %s in %s in %.1f s; captions end at token(s) %s",
            cfg["model"],
            device,
            dtype,
            time.perf_counter() - started,
            end_ids,
        )

        def work(batch):
            seeds = [view_seed(cfg["seed"], v.uid, v.view) for v in batch]
            return caption_batch(model, processor, [v.image() for v in batch], seeds, settings)

        done, failed = process_views(views, work, cfg["batch_size"], STAGE, shard, render_path)
        failures += failed
        for view, texts in done:
            cleaned = [clean_caption(t) for t in texts]
            rows.append(
                {
                    "uid": view.uid,
                    "view": view.view,
                    "captions": cleaned,
                    "empty_captions": sum(1 for t in cleaned if not t),
                    "model": cfg["model"],
                    "seed": view_seed(cfg["seed"], view.uid, view.view),
                }
            )
    generation = {**asdict(settings), "seed": cfg["seed"], "eos_token_id": end_ids}
    metadata = {
        "ulip2.schema_version": SCHEMA_VERSION,
        "ulip2.stage": STAGE,
        "ulip2.shard": shard,
        "ulip2.model": cfg["model"],
        "ulip2.generation": json.dumps(generation),
        **numerics_metadata(device, dtype, precision),
        "ulip2.version": __version__,
    }
    write_failures(failures, failures_out, {"ulip2.stage": STAGE, "ulip2.shard": shard})
    write_parquet(pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA), out, metadata)
    summary = {
        "shard": shard,
        "views": len(rows),
        "failed_views": len(failures),
        "empty_captions": sum(r["empty_captions"] for r in rows),
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("shard summary: %s", json.dumps(summary))
    return summary
