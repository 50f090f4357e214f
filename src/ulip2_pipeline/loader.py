"""A streaming PyTorch dataset over triplet shards (and, optionally, their embedding shards).

Shards are read row group by row group, never whole. Each epoch the shard order is
shuffled, DataLoader workers split the shards between them, and a buffer shuffles
samples across the shards a worker is reading. Points come at 10k, 8k or 2k by
slicing the FPS-ordered cloud.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import point_columns
from .splits import holdout

TRIPLET_COLUMNS = ("uid", "category", "xyz", "rgb", "kept", "views")
EMBED_COLUMNS = ("uid", "image_embeddings", "caption_embeddings")


class ShardError(ValueError):
    """A file that is not a readable ulip2 shard; the message names the file."""


def open_shard(path: str | Path, required: tuple[str, ...]) -> pq.ParquetFile:
    """Open a Parquet shard, checking it is readable and has the columns a reader needs."""
    try:
        shard = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(f"{path}: not a readable Parquet file (truncated or not Parquet): {exc}") from exc
    names = set(shard.schema_arrow.names)
    missing = [c for c in required if c not in names]
    if missing:
        raise ShardError(f"{path}: not a ulip2 shard of this kind; missing columns {missing}")
    return shard


POINT_COLUMNS = ("xyz", "rgb")


def _iter_rows(shard: pq.ParquetFile, path, columns) -> Iterator[dict]:
    """Rows as dicts, one row group at a time; point columns come as NumPy arrays."""
    try:
        for group in range(shard.num_row_groups):
            table = shard.read_row_group(group, columns=list(columns))
            arrays = {c: point_columns.to_numpy(table, c) for c in POINT_COLUMNS if c in table.column_names}
            rest = table.drop_columns(list(arrays)).to_pylist()
            for index, row in enumerate(rest):
                row.update({c: values[index] for c, values in arrays.items()})
                yield row
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(f"{path}: unreadable row group (file truncated or corrupt): {exc}") from exc


class TripletDataset(IterableDataset):
    """Samples: uid, category, xyz (N, 3) float32, rgb (N, 3) float32 in [0, 1], a kept caption of a
    random view, and with embedding shards the view's image embedding and the caption's text embedding."""

    def __init__(self, triplet_paths, embed_paths=None, num_points: int = 10000, shuffle_buffer: int = 256,
                 seed: int = 0, holdout_fraction: float = 0.0, split: str | None = None,
                 with_image_bytes: bool = False):
        """``split``: None for every object, "train" or "heldout" for one side of the stable uid
        split (``holdout_fraction``). ``with_image_bytes`` adds the chosen view's PNG."""
        self.triplet_paths = [str(p) for p in triplet_paths]
        self.embed_paths = [str(p) for p in embed_paths] if embed_paths else None
        if self.embed_paths and len(self.embed_paths) != len(self.triplet_paths):
            raise ValueError("give one embedding shard per triplet shard, in the same order")
        for path in self.triplet_paths:
            open_shard(path, TRIPLET_COLUMNS)
        for path in self.embed_paths or []:
            open_shard(path, EMBED_COLUMNS)
        self.num_points, self.shuffle_buffer, self.seed = num_points, shuffle_buffer, seed
        self.holdout_fraction, self.split, self.with_image_bytes = holdout_fraction, split, with_image_bytes
        self.columns = TRIPLET_COLUMNS + (("images",) if with_image_bytes else ())
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shards_for_this_worker(self) -> list[int]:
        order = list(range(len(self.triplet_paths)))
        random.Random(self.seed + self.epoch).shuffle(order)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            order = order[torch.distributed.get_rank()::torch.distributed.get_world_size()]
        info = get_worker_info()
        return order if info is None else order[info.id::info.num_workers]

    def _wanted(self, uid: str) -> bool:
        if self.split is None:
            return True
        return holdout(uid, self.holdout_fraction) == (self.split == "heldout")

    def _samples(self, index: int, rng: random.Random) -> Iterator[dict]:
        path = self.triplet_paths[index]
        rows = _iter_rows(open_shard(path, self.columns), path, self.columns)
        embeddings = None
        if self.embed_paths:
            embed_path = self.embed_paths[index]
            embeddings = _iter_rows(open_shard(embed_path, EMBED_COLUMNS), embed_path, EMBED_COLUMNS)
        for row in rows:
            extra = next(embeddings) if embeddings is not None else None
            if extra is not None and extra["uid"] != row["uid"]:
                raise ShardError(f"{self.embed_paths[index]}: row {extra['uid']!r} does not match {row['uid']!r} "
                                 f"of {path}; rebuild the embeddings")
            if self._wanted(row["uid"]):
                yield self._sample(row, extra, rng)

    def _sample(self, row: dict, extra: dict | None, rng: random.Random) -> dict:
        xyz = np.array(row["xyz"][:self.num_points], dtype=np.float32)  # a writable copy for torch
        rgb = row["rgb"][:self.num_points].astype(np.float32) / 255.0
        view = rng.randrange(len(row["views"]))
        kept = row["kept"][view]
        sample = {"uid": row["uid"], "category": row["category"] or "", "xyz": torch.from_numpy(xyz),
                  "rgb": torch.from_numpy(rgb), "caption": kept[0] if kept else ""}
        if self.with_image_bytes:
            sample["image_png"] = row["images"][view]["bytes"]
        if extra is not None:
            sample["image_embedding"] = torch.tensor(extra["image_embeddings"][view], dtype=torch.float32)
            first_caption = sum(len(k) for k in row["kept"][:view])
            if kept:
                sample["text_embedding"] = torch.tensor(extra["caption_embeddings"][first_caption], dtype=torch.float32)
            else:
                sample["text_embedding"] = sample["image_embedding"].clone()
        return sample

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        rng = random.Random(hash((self.seed, self.epoch, info.id if info else -1)))
        buffer: list[dict] = []
        for index in self._shards_for_this_worker():
            for sample in self._samples(index, rng):
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(sample)
                    continue
                slot = rng.randrange(len(buffer))
                buffer[slot], sample = sample, buffer[slot]
                yield sample
        rng.shuffle(buffer)
        yield from buffer
