"""Exports of the triplets to the layouts existing loaders read (ULIP-2 and OpenShape)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .atomic import atomic_path, write_bytes

ULIP_POINTS = 8192


def _rows(triplets_path, columns):
    for batch in pq.ParquetFile(triplets_path).iter_batches(batch_size=16, columns=columns):
        yield from batch.to_pylist()


def export_ulip_shard(triplets_path, root, fragment_out) -> int:
    """{uid}/{uid}_8192.npz (arr_0: (8192, 3) float32) and {uid}/000.png ...; captions into a fragment.

    The fragment maps each image's relative path to its captions, best CLIP score first
    (the first one is what ULIP-2 kept), empty captions dropped.
    """
    root = Path(root)
    captions = {}
    count = 0
    for row in _rows(triplets_path, ["uid", "xyz", "images", "captions", "caption_scores"]):
        uid = row["uid"]
        xyz = np.asarray(row["xyz"][:ULIP_POINTS], dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, xyz)
        write_bytes(buffer.getvalue(), root / uid / f"{uid}_{ULIP_POINTS}.npz")
        for image, texts, scores in zip(row["images"], row["captions"], row["caption_scores"]):
            write_bytes(image["bytes"], root / image["path"])
            ranked = sorted(zip(scores, range(len(texts)), texts), key=lambda t: (-t[0], t[1]))
            captions[image["path"]] = [text for _, _, text in ranked if text]
        count += 1
    with atomic_path(fragment_out) as tmp:
        tmp.write_text(json.dumps(captions, sort_keys=True))
    return count


def merge_json_fragments(fragments, out) -> None:
    merged = {}
    for fragment in fragments:
        merged.update(json.loads(Path(fragment).read_text()))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(merged, sort_keys=True, indent=1))


def export_openshape_shard(triplets_path, root, listing_out) -> int:
    """{uid}.npy holding a dict: xyz (10000, 3) float32, rgb (10000, 3) float32 in [0, 1]."""
    root = Path(root)
    written = []
    for row in _rows(triplets_path, ["uid", "xyz", "rgb"]):
        data = {"xyz": np.asarray(row["xyz"], dtype=np.float32),
                "rgb": (np.asarray(row["rgb"], dtype=np.float32) / 255.0)}
        buffer = io.BytesIO()
        np.save(buffer, data, allow_pickle=True)
        write_bytes(buffer.getvalue(), root / f"{row['uid']}.npy")
        written.append(f"{row['uid']}.npy")
    with atomic_path(listing_out) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in written))
    return len(written)
