"""ULIP-2's Objaverse triplet layout: {uid}/{uid}_8192.npz, {uid}/000.png ..., and captions.json."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.exports.common import iter_kept_rows, read_json, write_json
from ulip2_pipeline.quality.filters import QualityFilter

ULIP_POINTS = 8192


def export_ulip_shard(triplets_path, root, fragment_out, quality: QualityFilter | None = None) -> int:
    """{uid}/{uid}_8192.npz (arr_0: (8192, 3) float32) and {uid}/000.png ...; captions into a fragment.

    The fragment maps each image's relative path to its captions, best CLIP score first
    (the first one is what ULIP-2 kept), empty captions dropped.
    """
    root = Path(root)
    captions = {}
    count = 0
    for row in iter_kept_rows(triplets_path, ["uid", "xyz", "images", "captions", "caption_scores"], quality):
        uid = row["uid"]
        buffer = io.BytesIO()
        np.savez(buffer, np.asarray(row["xyz"][:ULIP_POINTS], dtype=np.float32))
        write_bytes(buffer.getvalue(), root / uid / f"{uid}_{ULIP_POINTS}.npz")
        for image, texts, scores in zip(row["images"], row["captions"], row["caption_scores"]):
            write_bytes(image["bytes"], root / image["path"])
            ranked = sorted(zip(scores, range(len(texts)), texts), key=lambda t: (-t[0], t[1]))
            captions[image["path"]] = [text for _, _, text in ranked if text]
        count += 1
    write_json(captions, fragment_out)
    return count


def merge_json_fragments(fragments, out) -> None:
    merged = {}
    for fragment in fragments:
        merged.update(read_json(fragment))
    write_json(merged, out, indent=1)
