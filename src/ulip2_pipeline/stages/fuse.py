"""The fuse stage (optional, ``fuse.enabled``): one caption per object from its views' kept captions.

Cap3D's multi-view consolidation with an open instruct LLM (``models.fuse_llm``, e.g.
``Qwen/Qwen2.5-7B-Instruct``): the kept captions of an object's views, in view order, are listed
in the instruction and the model answers with one caption. An object whose views kept one
distinct caption (one view, or every view the same text) has nothing to distill: that caption
is copied without calling the model (``fusion`` ``copied``), so the model never paraphrases a
lone caption. An object without a kept caption, one whose answer is empty and one the model
fails on (alone) become failure rows; a model that fails on every object of the first batch
with one error cannot run, and stops the job (``ModelCannotRun``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline.devices import is_out_of_memory, pick_device, run_in_batches
from ulip2_pipeline.failures import Failure
from ulip2_pipeline.models.blip2 import GenerationSettings
from ulip2_pipeline.models.fuse_llm import load_fuse_llm
from ulip2_pipeline.progress import Progress
from ulip2_pipeline.settings import FuseSettings
from ulip2_pipeline.shard import ShardClock, ShardSummary, ShardWork
from ulip2_pipeline.stages.model_stage import _ModelGuard, numerics_metadata

log = logging.getLogger(__name__)

STAGE = "fuse"
SCHEMA_VERSION = "1"
MODEL, COPIED = "model", "copied"

FUSED_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("object_caption", pa.string(), nullable=False),
        pa.field("view_captions", pa.list_(pa.string()), nullable=False),  # the inputs, in view order
        pa.field("views", pa.list_(pa.int16()), nullable=False),  # the view of each input caption
        pa.field("fusion", pa.string(), nullable=False),  # model | copied
        pa.field("model", pa.string()),  # null where copied
        pa.field("seed", pa.int64()),  # the object's sampling seed; null where copied
    ]
)


def object_seed(seed: int, uid: str) -> int:
    """A per-object seed: the same object samples the same way whatever batch or shard it is in."""
    digest = hashlib.sha256(f"{seed}:{uid}:fuse".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class ObjectCaptions:
    uid: str
    captions: list[str]  # every non-empty kept caption of its views, in view order
    views: list[int]

    @property
    def distinct(self) -> int:
        return len(set(self.captions))


def read_kept_captions(ranked_path: str | Path) -> list[ObjectCaptions]:
    """Each object of a ranked shard with its views' kept captions, in view order (objects by uid)."""
    rows = pq.read_table(ranked_path, columns=["uid", "view", "kept"]).to_pylist()
    per_object = defaultdict(list)
    for row in rows:
        per_object[row["uid"]].append(row)
    objects = []
    for uid in sorted(per_object):
        captions, views = [], []
        for row in sorted(per_object[uid], key=lambda r: r["view"]):
            for text in row["kept"]:
                if text and text.strip():
                    captions.append(text)
                    views.append(row["view"])
        objects.append(ObjectCaptions(uid, captions, views))
    return objects


def generation_settings(settings: FuseSettings) -> GenerationSettings:
    return GenerationSettings(
        num_captions=1,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        do_sample=settings.do_sample,
    )


@dataclass(frozen=True)
class Inputs:
    ranked: str | Path
    shard: str


@dataclass(frozen=True)
class Outputs:
    fused: str | Path
    failures: str | Path


def _row(obj: ObjectCaptions, caption: str, fusion: str, model: str | None, seed: int | None) -> dict:
    return {
        "uid": obj.uid,
        "object_caption": caption,
        "view_captions": obj.captions,
        "views": obj.views,
        "fusion": fusion,
        "model": model,
        "seed": seed,
    }


def run_shard(inputs: Inputs, settings: FuseSettings, outputs: Outputs) -> ShardSummary:
    """One caption per object of the ranked shard. The model is loaded only when some object needs it: a shard
    without objects, or whose objects each kept one distinct caption, writes its output without loading it."""
    clock = ShardClock(STAGE, SCHEMA_VERSION, inputs.shard, log)
    source = str(inputs.ranked)
    objects = read_kept_captions(inputs.ranked)
    failures = [
        Failure(o.uid, STAGE, source, "no_captions", "no view of the object kept a non-empty caption")
        for o in objects
        if not o.captions
    ]
    copied = [o for o in objects if o.distinct == 1]
    to_fuse = [o for o in objects if o.distinct > 1]
    rows = {o.uid: _row(o, o.captions[0], COPIED, None, None) for o in copied}
    generation = generation_settings(settings)
    llm, device, end_ids, pad_id = None, None, None, None
    if to_fuse:
        device = pick_device(settings.device)
        llm = load_fuse_llm(settings.model, device, settings.precision)
        end_ids, pad_id = llm.end_ids, llm.pad_id
        log.info(
            "loaded %s on %s in %s in %.1f s; answers end at token(s) %s",
            settings.model,
            device,
            llm.dtype,
            time.perf_counter() - clock.started,
            end_ids,
        )
        prompts = {o.uid: llm.prompt_ids(settings.system, settings.instruction, o.captions) for o in to_fuse}

        def work(batch: list[ObjectCaptions]) -> list[str]:
            seeds = [object_seed(settings.seed, o.uid) for o in batch]
            return llm.fuse([prompts[o.uid] for o in batch], seeds, generation)

        def failure(obj: ObjectCaptions, exc: Exception) -> Failure:
            reason = "out_of_memory" if is_out_of_memory(exc) else "model_error"
            return Failure(obj.uid, STAGE, source, reason, f"{type(exc).__name__}: {exc}")

        guard = _ModelGuard(STAGE, settings.model, source, unit="object", failure=failure)
        results = run_in_batches(
            to_fuse,
            work,
            settings.batch_size,
            on_error=guard.on_error,
            progress=Progress(f"{STAGE} {inputs.shard}", len(to_fuse), unit="objects"),
            after_batch=guard.after_batch,
        )
        for obj, result in zip(to_fuse, results):
            if isinstance(result, Failure):
                failures.append(result)
            elif not result:
                failures.append(Failure(obj.uid, STAGE, source, "empty_caption", "the model's answer was empty"))
            else:
                rows[obj.uid] = _row(obj, result, MODEL, settings.model, object_seed(settings.seed, obj.uid))
    for failure_row in failures:
        log.warning("%s: %s: %s", failure_row.uid, failure_row.reason, failure_row.detail)
    table_rows = [rows[o.uid] for o in objects if o.uid in rows]
    recipe = {
        "system": settings.system,
        "instruction": settings.instruction,
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "top_p": settings.top_p,
        "temperature": settings.temperature,
        "seed": settings.seed,
        "eos_token_id": end_ids,
        "pad_token_id": pad_id,
        "single_caption": COPIED,  # an object with one distinct kept caption keeps it, without the model
    }
    work_done = ShardWork(
        table=pa.Table.from_pylist(table_rows, schema=FUSED_SCHEMA),
        counts={
            "objects": len(objects),
            "fused": sum(1 for r in table_rows if r["fusion"] == MODEL),
            "copied": sum(1 for r in table_rows if r["fusion"] == COPIED),
            "failed": len(failures),
        },
        metadata={
            "ulip2.model": settings.model,
            "ulip2.generation": json.dumps(recipe),
            **numerics_metadata(device, llm.dtype if llm else None, settings.precision),
        },
        failures=failures,
    )
    return clock.finish(work_done, outputs.fused, outputs.failures)
