"""The caption stage: every rendered view of a shard gets n captions (BLIP-2 OPT or Flan-T5, read from the
model's configuration: ``models.captioners``)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.models.blip2 import GenerationSettings, clean_caption
from ulip2_pipeline.models.captioners import load_captioner
from ulip2_pipeline.settings import CaptionSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
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


def generation_settings(settings: CaptionSettings) -> GenerationSettings:
    return GenerationSettings(
        num_captions=settings.num_captions,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        prompt=settings.prompt or "",
        do_sample=settings.do_sample,
    )


@dataclass(frozen=True)
class Inputs:
    render: str | Path
    shard: str


@dataclass(frozen=True)
class Outputs:
    captions: str | Path
    failures: str | Path


def run_shard(inputs: Inputs, settings: CaptionSettings, outputs: Outputs) -> ShardSummary:
    """Caption every decodable view of the render shard; corrupt PNGs and views the model fails on
    (alone) become failure rows. A shard without views writes an empty output and loads no model."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    views, failures = read_views(inputs.render, STAGE)
    generation = generation_settings(settings)
    rows, device, dtype, end_ids, family, asked = [], None, None, None, "none", None
    if views:
        device = pick_device(settings.device)
        captioner = load_captioner(settings.model, device, settings.precision)
        dtype, end_ids, family = captioner.dtype, captioner.end_ids, captioner.family
        asked = captioner.prompt(generation)
        log.info(
            "loaded %s (%s) on %s in %s in %.1f s; captions end at token(s) %s",
            settings.model,
            family,
            device,
            dtype,
            time.perf_counter() - clock.started,
            end_ids,
        )

        def work(batch):
            seeds = [view_seed(settings.seed, v.uid, v.view) for v in batch]
            return captioner.caption([v.image() for v in batch], seeds, generation)

        done, failed = process_views(
            views, work, settings.batch_size, STAGE, inputs.shard, inputs.render, model=settings.model
        )
        failures += failed
        for view, texts in done:
            cleaned = [clean_caption(t) for t in texts]
            rows.append(
                {
                    "uid": view.uid,
                    "view": view.view,
                    "captions": cleaned,
                    "empty_captions": sum(1 for t in cleaned if not t),
                    "model": settings.model,
                    "seed": view_seed(settings.seed, view.uid, view.view),
                }
            )
    # prompt_used: what the model was really given (an instruction family's default when prompt is empty).
    recipe = {**asdict(generation), "seed": settings.seed, "eos_token_id": end_ids, "prompt_used": asked}
    work = ShardWork(
        table=pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA),
        counts={
            "views": len(rows),
            "failed_views": len(failures),
            "empty_captions": sum(r["empty_captions"] for r in rows),
        },
        metadata={
            "ulip2.model": settings.model,
            "ulip2.caption_family": family,
            "ulip2.generation": json.dumps(recipe),
            **numerics_metadata(device, dtype, settings.precision),
        },
        failures=failures,
    )
    return clock.finish(work, outputs.captions, outputs.failures)
