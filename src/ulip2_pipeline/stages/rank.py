"""The rank stage: CLIP scores for every caption of every view, and the kept top-k."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline.models.clip import load_configured_clip, score_views, top_k
from ulip2_pipeline.settings import RankSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
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


@dataclass(frozen=True)
class Inputs:
    render: str | Path
    captions: str | Path
    shard: str


@dataclass(frozen=True)
class Outputs:
    ranked: str | Path
    failures: str | Path


def run_shard(inputs: Inputs, settings: RankSettings, outputs: Outputs) -> ShardSummary:
    """Score every captioned view; views the model fails on (alone) become failure rows. A shard
    without captioned views writes an empty output and loads no model."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    views, failures = read_views(inputs.render, STAGE)
    captions = {(r["uid"], r["view"]): r["captions"] for r in pq.read_table(inputs.captions).to_pylist()}
    views = [v for v in views if (v.uid, v.view) in captions]
    rows, clip = [], None
    if views:
        clip = load_configured_clip(settings)
        log.info(
            "loaded %s on %s in %s with %s in %.1f s",
            settings.model_name,
            clip.device,
            clip.dtype,
            clip.activation,
            time.perf_counter() - clock.started,
        )

        def work(batch):
            return list(score_views(clip, [v.image() for v in batch], [captions[(v.uid, v.view)] for v in batch]))

        done, failed = process_views(
            views, work, settings.batch_size, STAGE, inputs.shard, inputs.render, model=settings.model_name
        )
        failures += failed
        for view, scores in done:
            texts = captions[(view.uid, view.view)]
            best = top_k(scores, texts, settings.top_k)
            rows.append(
                {
                    "uid": view.uid,
                    "view": view.view,
                    "captions": texts,
                    "scores": scores.tolist(),
                    "top_k": best,
                    "kept": [texts[i] for i in best],
                    "model": settings.model_name,
                }
            )
    work = ShardWork(
        table=pa.Table.from_pylist(rows, schema=RANKED_SCHEMA),
        counts={"views": len(rows), "failed_views": len(failures)},
        metadata={
            "ulip2.model": settings.model_name,
            "ulip2.top_k": str(settings.top_k),
            **numerics_metadata(clip.device if clip else None, clip.dtype if clip else None, settings.precision),
            "ulip2.activation": clip.activation if clip else "none",
        },
        failures=failures,
    )
    return clock.finish(work, outputs.ranked, outputs.failures)
