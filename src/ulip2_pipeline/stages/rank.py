"""The rank stage: CLIP scores for every caption of every view, and the kept top-k."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline import __version__
from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.failures import write_failures
from ulip2_pipeline.models.clip import load_clip, score_views, top_k
from ulip2_pipeline.stages.model_stage import numerics_metadata, process_views
from ulip2_pipeline.stages.views import read_views

log = logging.getLogger(__name__)

STAGE = "rank"
SCHEMA_VERSION = "1"

RANKED_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("view", pa.int16(), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("top_k", pa.list_(pa.int16()), nullable=False),
        pa.field("kept", pa.list_(pa.string()), nullable=False),
        pa.field("model", pa.string()),
    ]
)


def model_id(cfg: dict) -> str:
    return f"{cfg['arch']}/{cfg['pretrained']}"


def run_rank_shard(
    render_path: str | Path, captions_path: str | Path, shard: str, cfg: dict, out: str | Path, failures_out: str | Path
) -> dict:
    """Score every captioned view; views the model fails on (alone) become failure rows. A shard
    without captioned views writes an empty output and loads no model."""
    started = time.perf_counter()
    views, failures = read_views(render_path, STAGE)
    captions = {(r["uid"], r["view"]): r["captions"] for r in pq.read_table(captions_path).to_pylist()}
    views = [v for v in views if (v.uid, v.view) in captions]
    precision = cfg.get("precision", "auto")
    rows, clip = [], None
    if views:
        clip = load_clip(cfg["arch"], cfg["pretrained"], cfg.get("arch_config"), pick_device(cfg["device"]), precision)
        log.info(
            "loaded %s on %s in %s with %s in %.1f s",
            model_id(cfg),
            clip.device,
            clip.dtype,
            clip.activation,
            time.perf_counter() - started,
        )

        def work(batch):
            return list(score_views(clip, [v.image() for v in batch], [captions[(v.uid, v.view)] for v in batch]))

        done, failed = process_views(views, work, cfg["batch_size"], STAGE, shard, render_path)
        failures += failed
        for view, scores in done:
            texts = captions[(view.uid, view.view)]
            best = top_k(scores, texts, cfg["top_k"])
            rows.append(
                {
                    "uid": view.uid,
                    "view": view.view,
                    "captions": texts,
                    "scores": scores.tolist(),
                    "top_k": best,
                    "kept": [texts[i] for i in best],
                    "model": model_id(cfg),
                }
            )
    metadata = {
        "ulip2.schema_version": SCHEMA_VERSION,
        "ulip2.stage": STAGE,
        "ulip2.shard": shard,
        "ulip2.model": model_id(cfg),
        "ulip2.top_k": str(cfg["top_k"]),
        **numerics_metadata(clip.device if clip else None, clip.dtype if clip else None, precision),
        "ulip2.activation": clip.activation if clip else "none",
        "ulip2.version": __version__,
    }
    write_failures(failures, failures_out, {"ulip2.stage": STAGE, "ulip2.shard": shard})
    write_parquet(pa.Table.from_pylist(rows, schema=RANKED_SCHEMA), out, metadata)
    summary = {
        "shard": shard,
        "views": len(rows),
        "failed_views": len(failures),
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("shard summary: %s", json.dumps(summary))
    return summary
