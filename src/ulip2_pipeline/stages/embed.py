"""The embed stage: frozen OpenCLIP embeddings of every view and every kept caption, computed once."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from ulip2_pipeline.devices import run_in_batches
from ulip2_pipeline.models.clip import load_configured_clip
from ulip2_pipeline.progress import Progress
from ulip2_pipeline.settings import EmbedSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.stages.model_stage import numerics_metadata

log = logging.getLogger(__name__)

STAGE = "embed"
SCHEMA_VERSION = "1"

EMBED_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("views", pa.list_(pa.int16())),
        pa.field("image_embeddings", pa.list_(pa.list_(pa.float32()))),
        pa.field("caption_views", pa.list_(pa.int16())),
        pa.field("captions", pa.list_(pa.string())),
        pa.field("caption_embeddings", pa.list_(pa.list_(pa.float32()))),
        # the text embedding of the triplet's object_caption (the fuse stage's); null where it has none
        pa.field("object_caption_embedding", pa.list_(pa.float32())),
    ]
)


@torch.inference_mode()
def _encode_images(clip, pngs: list[bytes]) -> np.ndarray:
    pixels = torch.stack([clip.preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in pngs]).to(clip.device)
    return torch.nn.functional.normalize(clip.model.encode_image(pixels).float(), dim=-1).cpu().numpy()


@torch.inference_mode()
def _encode_texts(clip, texts: list[str]) -> np.ndarray:
    tokens = clip.tokenizer(texts).to(clip.device)
    return torch.nn.functional.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu().numpy()


@dataclass(frozen=True)
class Inputs:
    triplets: str | Path
    shard: str


@dataclass(frozen=True)
class Outputs:
    embeddings: str | Path


def run_shard(inputs: Inputs, settings: EmbedSettings, outputs: Outputs) -> ShardSummary:
    """L2-normalised image embeddings of every view and text embeddings of every kept caption and of the object's
    caption (the fuse stage's, where the triplets have one).

    A shard without objects writes an empty output and loads no model."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    columns = ["uid", "views", "images", "kept"]
    if "object_caption" in pq.read_schema(inputs.triplets).names:  # triplets written before the fuse stage lack it
        columns.append("object_caption")
    rows = pq.read_table(inputs.triplets, columns=columns).to_pylist()
    clip = None
    if rows:
        clip = load_configured_clip(settings)
        log.info(
            "loaded %s/%s on %s in %s with %s",
            settings.arch,
            settings.pretrained,
            clip.device,
            clip.dtype,
            clip.activation,
        )
    images = [image["bytes"] for row in rows for image in row["images"]]
    texts, text_views, text_ranges = [], [], []
    for row in rows:
        start = len(texts)
        for view, kept in zip(row["views"], row["kept"]):
            texts += kept
            text_views += [view] * len(kept)
        text_ranges.append((start, len(texts)))
    object_texts = [row["object_caption"] for row in rows if row.get("object_caption")]
    progress = Progress(
        f"embed {inputs.shard}", len(images) + len(texts) + len(object_texts), unit="images and captions"
    )
    image_vectors = run_in_batches(
        images, lambda b: list(_encode_images(clip, b)), settings.batch_size, progress=progress
    )
    text_vectors = run_in_batches(texts, lambda b: list(_encode_texts(clip, b)), settings.batch_size, progress=progress)
    object_vectors = iter(
        run_in_batches(object_texts, lambda b: list(_encode_texts(clip, b)), settings.batch_size, progress=progress)
    )
    out_rows, cursor = [], 0
    for row, (start, end) in zip(rows, text_ranges):
        count = len(row["images"])
        out_rows.append(
            {
                "uid": row["uid"],
                "views": row["views"],
                "image_embeddings": [v.tolist() for v in image_vectors[cursor : cursor + count]],
                "caption_views": text_views[start:end],
                "captions": texts[start:end],
                "caption_embeddings": [v.tolist() for v in text_vectors[start:end]],
                "object_caption_embedding": next(object_vectors).tolist() if row.get("object_caption") else None,
            }
        )
        cursor += count
    dim = len(image_vectors[0]) if image_vectors else 0
    work = ShardWork(
        table=pa.Table.from_pylist(out_rows, schema=EMBED_SCHEMA),
        counts={
            "objects": len(out_rows),
            "images": len(images),
            "captions": len(texts),
            "object_captions": len(object_texts),
            "dim": dim,
        },
        metadata={
            "ulip2.model": settings.model_name,
            "ulip2.embedding_dim": str(dim),
            "ulip2.normalised": "L2",
            **numerics_metadata(clip.device if clip else None, clip.dtype if clip else None, settings.precision),
            "ulip2.activation": clip.activation if clip else "none",
        },
    )
    return clock.finish(work, outputs.embeddings)
