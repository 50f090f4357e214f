"""OpenShape's training layout, read unchanged by its ``Four`` dataset (``src/data.py`` of OpenShape_code).

Per object ``{uid}.npy``, a pickled dict:

| key | value |
|---|---|
| ``dataset``, ``group``, ``id`` | our dataset's name, the object's shard, its uid |
| ``xyz`` | (10000, 3) float32, normalised, farthest-point order |
| ``rgb`` | (10000, 3) float32 in [0, 1] |
| ``image_feat`` | (views, D) float32: the embed stage's feature of every rendered view |
| ``thumbnail_feat`` | (D,) float32: the first view's (azimuth 0) |
| ``text`` | list of str (see ``openshape_texts``) |
| ``text_feat`` | list of ``{"original": (D,), "prompt_avg": (D,)}``, one per ``text`` |
| ``blip_caption`` | str: the best kept caption ("" when none) |
| ``blip_caption_feat`` | ``{"original": the embed stage's feature, "prompt_avg": (D,)}`` ({} when no caption) |
| ``msft_caption`` | "" (no second captioner; the loader skips an empty one) |
| ``retrieval_text``, ``retrieval_text_feat`` | [] |
| ``up_axis`` | the points' up axis (OpenShape's ``y_up: true`` expects "y") |

Every feature is an L2-normalised vector of the frozen CLIP the ``embed:`` section names.
The split JSON (``train.json``) lists ``{"id", "data_path", "dataset", "group"}`` per object;
``data_path`` is absolute because the loader opens it as given, from wherever training runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.exports.common import iter_kept_rows, iter_rows, npy_bytes, read_json, write_json
from ulip2_pipeline.exports.openshape_texts import TRIPLET_TEXT_COLUMNS, openshape_texts
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.records import Row


class MisalignedShards(ValueError):
    """The embed or text-feature shard does not hold the triplet shard's objects in its order."""


def _aligned(name: str, path, uids: list[str]) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    if [row["uid"] for row in rows] != uids:
        raise MisalignedShards(f"{path}: its uids differ from the triplet shard's; rebuild the {name} shard")
    return rows


def _vector(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def openshape_record(row: Row, embed: Row, text_features: Row, dataset: str, group: str) -> dict:
    """The dict OpenShape's loader reads, from a triplet row and its embed and text-feature rows."""
    texts, caption = openshape_texts(row)
    by_text = {
        t: (o, p) for t, o, p in zip(text_features["texts"], text_features["original"], text_features["prompt_avg"])
    }
    image_feat = _vector(embed["image_embeddings"])
    caption_feat = {}
    if caption:
        caption_feat = {
            "original": _vector(embed["caption_embeddings"][embed["captions"].index(caption)]),
            "prompt_avg": _vector(by_text[caption][1]),
        }
    return {
        "dataset": dataset,
        "group": group,
        "id": row["uid"],
        "xyz": np.asarray(row["xyz"], dtype=np.float32),
        "rgb": np.asarray(row["rgb"], dtype=np.float32) / 255.0,
        "image_feat": image_feat,
        "thumbnail_feat": image_feat[0],
        "text": texts,
        "text_feat": [{"original": _vector(by_text[t][0]), "prompt_avg": _vector(by_text[t][1])} for t in texts],
        "blip_caption": caption,
        "blip_caption_feat": caption_feat,
        "msft_caption": "",
        "retrieval_text": [],
        "retrieval_text_feat": [],
        "up_axis": row["up_axis"],
    }


def export_openshape_shard(
    triplets_path,
    embed_path,
    text_features_path,
    dataset: str,
    shard: str,
    root,
    listing_out,
    quality: QualityFilter | None = None,
) -> dict:
    """{uid}.npy per object and a listing of the shard's split entries (data_path relative to ``root``)."""
    root = Path(root)
    uids = [r["uid"] for r in iter_rows(triplets_path, ["uid"], batch_size=1024)]
    embeds = dict(zip(uids, _aligned("embed", embed_path, uids)))
    features = dict(zip(uids, _aligned("text-feature", text_features_path, uids)))
    columns = list(dict.fromkeys(TRIPLET_TEXT_COLUMNS + ["xyz", "rgb", "up_axis"]))
    entries, skipped = [], {}
    for row in iter_kept_rows(triplets_path, columns, quality):
        embed, feature = embeds[row["uid"]], features[row["uid"]]
        if "view_positions" in row:  # quality.drop_views cut the row's views: cut the image features alike
            embed = {**embed, "image_embeddings": [embed["image_embeddings"][i] for i in row["view_positions"]]}
        record = openshape_record(row, embed, feature, dataset, shard)
        if not record["text"]:
            # The loader samples a text unconditionally (np.random.randint(len(text))): it would crash.
            skipped[row["uid"]] = "no_text: no category and no kept caption"
            continue
        name = f"{row['uid']}.npy"
        write_bytes(npy_bytes(record), root / name)
        entries.append({"id": row["uid"], "data_path": name, "dataset": dataset, "group": shard})
    listing = {"objects": entries, "skipped": skipped}
    write_json(listing, listing_out, indent=1)
    return listing


def write_openshape_split(listings, root, out) -> int:
    """OpenShape's split JSON: every listed object, ``data_path`` made absolute under ``root``."""
    root = Path(root).resolve()
    split = []
    for listing in listings:
        for entry in read_json(listing)["objects"]:
            split.append({**entry, "data_path": str(root / entry["data_path"])})
    write_json(split, out, indent=1)
    return len(split)
