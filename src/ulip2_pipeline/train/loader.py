"""Streaming training batches from triplet shards (and, optionally, their embedding shards).

Each epoch follows a plan (``epoch_plan``): the shard order is shuffled, every rank
gets the same number of batches, every training object appears at most once, and
batches are permutations of windows of about ``shuffle_buffer`` objects. DataLoader
workers read whole windows, a few contiguous row-group ranges each (only the columns
a batch needs, never a whole shard), and the batches come back in the plan's order
whatever the number of workers. Per-object randomness (which view, which caption) is
keyed by the seed, the epoch and the object's uid, so ``workers`` only changes speed.
Points come at 10k, 8k or 2k by slicing the FPS-ordered cloud.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ulip2_pipeline import point_columns
from ulip2_pipeline.quality.filters import FLAG_COLUMNS, QualityFilter
from ulip2_pipeline.records import Row
from ulip2_pipeline.train.epoch_plan import Window, batches_per_rank, epoch_windows
from ulip2_pipeline.train.splits import holdout

TRIPLET_COLUMNS = ("uid", "category", "xyz", "rgb", "kept", "views")
EMBED_COLUMNS = ("uid", "image_embeddings", "caption_embeddings")
OBJECT_COLUMN, OBJECT_EMBEDDING_COLUMN = "object_caption", "object_caption_embedding"  # the fuse stage's


class ShardError(ValueError):
    """A file that is not a readable ulip2 shard; the message names the file."""


def open_shard(path: str | Path, required: tuple[str, ...]) -> pq.ParquetFile:
    """Open a Parquet shard, checking it is readable and has the columns a reader needs."""
    try:
        shard = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: not a readable Parquet file (truncated or not Parquet): {exc}") from exc
    names = set(shard.schema_arrow.names)
    missing = [c for c in required if c not in names]
    if missing:
        raise ShardError(f"{path}: not a ulip2 shard of this kind; missing columns {missing}")
    return shard


def _group_offsets(shard: pq.ParquetFile) -> np.ndarray:
    """Where each row group starts, and the row count at the end."""
    sizes = [shard.metadata.row_group(g).num_rows for g in range(shard.metadata.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def read_rows(path, required: tuple[str, ...], columns, rows: np.ndarray) -> list[dict]:
    """``rows`` (sorted row numbers) of a shard as dicts, reading only the row groups that hold them;
    point columns come as NumPy arrays."""
    shard = open_shard(path, required)
    offsets = _group_offsets(shard)
    first, last = (int(np.searchsorted(offsets, r, side="right")) - 1 for r in (rows[0], rows[-1]))
    try:
        table = pa.concat_tables([shard.read_row_group(g, columns=list(columns)) for g in range(first, last + 1)])
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: unreadable row group (file truncated or corrupt): {exc}") from exc
    return point_columns.rows_with_points(table.take(pa.array(rows - offsets[first])))


def collate(samples: list[dict]) -> dict:
    """Tensors stacked, everything else as lists."""
    return {
        key: torch.stack([s[key] for s in samples])
        if isinstance(samples[0][key], torch.Tensor)
        else [s[key] for s in samples]
        for key in samples[0]
    }


Batch = dict[str, Any]  # a collated batch: uid list, point and colour tensors, texts, embeddings


class TripletDataset(IterableDataset):
    """Batches of: uid, category, xyz (B, N, 3) float32, rgb (B, N, 3) float32 in [0, 1], a kept caption
    of a random view, and with embedding shards the view's image embedding and the caption's text
    embedding; with ``object_captions`` also the object's caption (the fuse stage's, "" where it has
    none) and its text embedding (the view caption's where it has none). Use ``dataset.epoch(e,
    workers=...)``; ``len(dataset)`` is the batches per epoch."""

    def __init__(
        self,
        triplet_paths,
        embed_paths=None,
        num_points: int = 10000,
        batch_size: int = 64,
        shuffle_buffer: int = 512,
        seed: int = 0,
        holdout_fraction: float = 0.0,
        split: str | None = None,
        with_image_bytes: bool = False,
        rank: int | None = None,
        world: int | None = None,
        object_captions: bool = False,
        quality: QualityFilter | None = None,
    ):
        """``split``: None for every object, "train" or "heldout" for one side of the stable uid
        split (``holdout_fraction``). ``with_image_bytes`` adds the chosen view's PNG. ``rank`` and
        ``world`` default to torch.distributed's when it is initialised. ``quality``: flagged objects and
        views to leave out (a view is drawn among those that stay)."""
        self.triplet_paths = [str(p) for p in triplet_paths]
        self.embed_paths = [str(p) for p in embed_paths] if embed_paths else None
        if self.embed_paths and len(self.embed_paths) != len(self.triplet_paths):
            raise ValueError("give one embedding shard per triplet shard, in the same order")
        self.num_points, self.batch_size, self.shuffle_buffer, self.seed = num_points, batch_size, shuffle_buffer, seed
        self.holdout_fraction, self.split, self.with_image_bytes = holdout_fraction, split, with_image_bytes
        self.columns = TRIPLET_COLUMNS + (("images",) if with_image_bytes else ())
        self.object_captions = object_captions
        self.quality = quality if quality is not None and quality.active else None
        if self.quality is not None:
            self.columns += FLAG_COLUMNS
        self.embed_columns = EMBED_COLUMNS
        if object_captions:
            self.columns += (OBJECT_COLUMN,)
            self.embed_columns += (OBJECT_EMBEDDING_COLUMN,)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        self.world = world if world is not None else (torch.distributed.get_world_size() if distributed else 1)
        self.objects = [self._training_rows(i) for i in range(len(self.triplet_paths))]
        self.epoch_number = 0

    def _training_rows(self, index: int) -> np.ndarray:
        """Row numbers of the shard's objects on this split (only the uid column is read)."""
        path = self.triplet_paths[index]
        shard = open_shard(path, self.columns)
        rows = shard.metadata.num_rows
        if self.embed_paths:
            embed_rows = open_shard(self.embed_paths[index], self.embed_columns).metadata.num_rows
            if embed_rows != rows:
                raise ShardError(
                    f"{self.embed_paths[index]}: {embed_rows} rows for the {rows} of {path}; rebuild the embeddings"
                )
        if (self.split is None and self.quality is None) or rows == 0:
            return np.arange(rows, dtype=np.int64)
        columns = ["uid"] + (["views", *FLAG_COLUMNS] if self.quality else [])
        try:
            table = shard.read(columns=columns).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{path}: unreadable (file truncated or corrupt): {exc}") from exc
        wanted = [
            i
            for i, row in enumerate(table)
            if (self.split is None or holdout(row["uid"], self.holdout_fraction) == (self.split == "heldout"))
            and (self.quality is None or self._kept(row))
        ]
        return np.asarray(wanted, dtype=np.int64)

    def _kept(self, row: Row) -> bool:
        return self.quality.keeps(row["uid"], row["flags"], row["view_flags"], len(row["views"]))

    @property
    def num_objects(self) -> int:
        return sum(len(rows) for rows in self.objects)

    def __len__(self) -> int:
        return batches_per_rank(self.num_objects, self.world, self.batch_size, self.shuffle_buffer)

    def set_epoch(self, epoch: int) -> None:
        self.epoch_number = epoch

    def epoch(self, epoch: int, workers: int = 0) -> "EpochBatches":
        """This rank's batches of ``epoch`` in order, read by ``workers`` DataLoader processes."""
        self.set_epoch(epoch)
        return EpochBatches(self, workers)

    def windows(self) -> list[Window]:
        return epoch_windows(
            [len(rows) for rows in self.objects],
            self.seed,
            self.epoch_number,
            self.rank,
            self.world,
            self.batch_size,
            self.shuffle_buffer,
        )

    def _read_window(self, window: Window) -> list[dict]:
        """The window's objects as samples, in stream order."""
        samples = []
        for shard, first, end in window.segments:
            rows = self.objects[shard][first:end]
            triplets = read_rows(self.triplet_paths[shard], self.columns, self.columns, rows)
            extras = (
                read_rows(self.embed_paths[shard], self.embed_columns, self.embed_columns, rows)
                if self.embed_paths
                else [None] * len(triplets)
            )
            for row, extra in zip(triplets, extras):
                if extra is not None and extra["uid"] != row["uid"]:
                    raise ShardError(
                        f"{self.embed_paths[shard]}: row {extra['uid']!r} does not match "
                        f"{row['uid']!r} of {self.triplet_paths[shard]}; rebuild the embeddings"
                    )
                samples.append(self._sample(row, extra))
        return samples

    def _sample(self, row: Row, extra: Row | None) -> dict:
        rng = random.Random(f"{self.seed}:{self.epoch_number}:{row['uid']}")
        xyz = np.array(row["xyz"][: self.num_points], dtype=np.float32)  # a writable copy for torch
        rgb = row["rgb"][: self.num_points].astype(np.float32) / 255.0
        if self.quality is None:
            view = rng.randrange(len(row["views"]))
        else:
            views = self.quality.views(row["view_flags"], len(row["views"]))
            view = views[rng.randrange(len(views))]
        kept = row["kept"][view]
        sample = {
            "uid": row["uid"],
            "category": row["category"] or "",
            "xyz": torch.from_numpy(xyz),
            "rgb": torch.from_numpy(rgb),
            "caption": kept[0] if kept else "",
        }
        if self.object_captions:
            sample["object_caption"] = row[OBJECT_COLUMN] or ""
        if self.with_image_bytes:
            sample["image_png"] = row["images"][view]["bytes"]
        if extra is not None:
            sample["image_embedding"] = torch.tensor(extra["image_embeddings"][view], dtype=torch.float32)
            first_caption = sum(len(k) for k in row["kept"][:view])
            if kept:
                sample["text_embedding"] = torch.tensor(extra["caption_embeddings"][first_caption], dtype=torch.float32)
            else:
                sample["text_embedding"] = sample["image_embedding"].clone()
            if self.object_captions:
                own = extra[OBJECT_EMBEDDING_COLUMN]
                sample["object_text_embedding"] = (
                    torch.tensor(own, dtype=torch.float32) if own is not None else sample["text_embedding"].clone()
                )
        return sample

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        """(batch index, batch) for this DataLoader worker's share of the windows."""
        info = get_worker_info()
        windows = self.windows()
        if info is not None:
            windows = windows[info.id :: info.num_workers]
        for window in windows:
            samples = self._read_window(window)
            for offset, positions in enumerate(window.batches):
                yield window.first_batch + offset, collate([samples[i] for i in positions])


class EpochBatches:
    """One epoch's batches in the plan's order: workers deliver windows as they finish them and a
    small reorder buffer (about ``workers`` windows) puts the batches back in sequence."""

    def __init__(self, dataset: TripletDataset, workers: int = 0):
        self.dataset, self.workers = dataset, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict]:
        if self.workers == 0:
            for _, batch in self.dataset:
                yield batch
            return
        # Its own generator: a DataLoader draws its base seed from the global torch RNG otherwise.
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.workers,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(0),
        )
        pending, expected = {}, 0
        for index, batch in loader:
            pending[index] = batch
            while expected in pending:
                yield pending.pop(expected)
                expected += 1
        if pending or expected != len(self.dataset):
            raise RuntimeError(f"the loader delivered {expected} of {len(self.dataset)} batches in order")
