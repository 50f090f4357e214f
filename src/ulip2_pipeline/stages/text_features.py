"""Text features the embed stage does not compute, from the very same frozen CLIP.

OpenShape's records carry two features per text: ``original`` (the text itself) and
``prompt_avg`` (the text put into each prompt template, each encoding L2-normalised, averaged,
re-normalised, as in ULIP's zero-shot protocol and OpenShape's prompt engineering). The
embed stage encodes kept captions only; this encodes what an object's OpenShape record needs
(category names, its best caption) both ways, with the model the embed section names, loaded
through the same ``load_clip``. Every vector is L2-normalised, like the embed stage's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.exports.common import iter_rows
from ulip2_pipeline.exports.openshape_texts import TRIPLET_TEXT_COLUMNS, strings_to_encode
from ulip2_pipeline.models.clip import load_configured_clip
from ulip2_pipeline.settings import EmbedSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.stages.model_stage import numerics_metadata
from ulip2_pipeline.train.zeroshot import TEMPLATES

log = logging.getLogger(__name__)

STAGE = "text_features"
SCHEMA_VERSION = "1"

TEXT_FEATURES_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("texts", pa.list_(pa.string())),
        pa.field("original", pa.list_(pa.list_(pa.float32()))),
        pa.field("prompt_avg", pa.list_(pa.list_(pa.float32()))),
    ]
)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def encode_both_ways(
    encode, strings: list[str], batch_size: int, templates: list[str] = TEMPLATES
) -> tuple[np.ndarray, np.ndarray]:
    """(original, prompt_avg) features of ``strings``, each (len(strings), D), L2-normalised.

    ``encode`` maps a list of texts to an array of (unnormalised) features.
    """
    if not strings:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    original = np.stack(run_in_batches(strings, lambda b: list(encode(b)), batch_size))
    prompts = [template.format(s) for s in strings for template in templates]
    prompted = np.stack(run_in_batches(prompts, lambda b: list(encode(b)), batch_size))
    per_string = _normalise(prompted).reshape(len(strings), len(templates), -1)
    return _normalise(original).astype(np.float32), _normalise(per_string.mean(axis=1)).astype(np.float32)


def clip_text_encoder(clip):
    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        tokens = clip.tokenizer(list(texts)).to(clip.device)
        return clip.model.encode_text(tokens).float().cpu().numpy()

    return encode


@dataclass(frozen=True)
class Inputs:
    triplets: str | Path
    shard: str


@dataclass(frozen=True)
class Outputs:
    features: str | Path


def run_shard(inputs: Inputs, settings: EmbedSettings, outputs: Outputs) -> ShardSummary:
    """One row per triplet row (same order): the strings its OpenShape record needs and their features."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    needed = [(row["uid"], strings_to_encode(row)) for row in iter_rows(inputs.triplets, TRIPLET_TEXT_COLUMNS)]
    distinct = list(dict.fromkeys(s for _, strings in needed for s in strings))
    # An empty shard loads no model and claims no GPU.
    encode, clip = None, None
    if distinct:
        clip = load_configured_clip(settings)
        encode = clip_text_encoder(clip)
    original, prompt_avg = encode_both_ways(encode, distinct, settings.batch_size)
    index = {s: i for i, s in enumerate(distinct)}
    rows = [
        {
            "uid": uid,
            "texts": strings,
            "original": [original[index[s]].tolist() for s in strings],
            "prompt_avg": [prompt_avg[index[s]].tolist() for s in strings],
        }
        for uid, strings in needed
    ]
    work = ShardWork(
        table=pa.Table.from_pylist(rows, schema=TEXT_FEATURES_SCHEMA),
        counts={
            "objects": len(rows),
            "distinct_texts": len(distinct),
            "encoded": len(distinct) * (1 + len(TEMPLATES)),
        },
        metadata={
            "ulip2.model": settings.model_name,
            "ulip2.normalised": "L2",
            **numerics_metadata(clip.device if clip else None, clip.dtype if clip else None, settings.precision),
            "ulip2.templates": json.dumps(TEMPLATES),
        },
    )
    return clock.finish(work, outputs.features)
