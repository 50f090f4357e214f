"""Which objects form which batch, on which rank, in one epoch: a pure function of the seed.

The training objects of every shard, in a shard order shuffled per epoch, form one
stream. Each rank takes an equal contiguous range of it (the stream's last
``len % world`` objects, at most ``world - 1``, sit this epoch out; the shuffled shard
order makes them different objects each epoch). A range is cut into windows of about
``window`` objects, a whole number of batches; each window is permuted and cut into
batches. So every rank has the same number of batches, every object is seen at most
once per epoch, batches mix shards that are neighbours in the shuffled order, and a
window is read from disk as a few contiguous row ranges. Nothing here depends on how
many DataLoader workers read the windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A contiguous stretch of the stream, as (shard, first, end) ranges of each shard's training
    objects, and its batches as positions into the stretch."""

    first_batch: int  # the epoch-wide index of its first batch on this rank
    segments: tuple[tuple[int, int, int], ...]
    batches: tuple[np.ndarray, ...]


def _generator(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def shard_order(num_shards: int, seed: int, epoch: int) -> np.ndarray:
    return _generator(seed, epoch, 0).permutation(num_shards)


def rank_range(total: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's [start, end) of the stream: equal lengths on every rank."""
    per_rank = total // world
    return rank * per_rank, (rank + 1) * per_rank


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """``count`` objects cut into batches; a lone leftover object joins the previous batch
    (a contrastive batch of one teaches nothing)."""
    sizes = [batch_size] * (count // batch_size)
    rest = count % batch_size
    if rest == 1 and sizes:
        sizes[-1] += 1
    elif rest:
        sizes.append(rest)
    return sizes


def window_bounds(start: int, end: int, batch_size: int, window: int) -> list[int]:
    """Boundaries of the windows over [start, end): each a whole number of batches of about
    ``window`` objects; a lone object at the end joins the window before it."""
    size = max(1, round(window / batch_size)) * batch_size
    bounds = list(range(start, end, size)) + [end]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return bounds if end > start else [start]


def batches_per_rank(total: int, world: int, batch_size: int, window: int) -> int:
    """How many batches every rank gets in every epoch."""
    start, end = rank_range(total, 0, world)
    bounds = window_bounds(start, end, batch_size, window)
    return sum(len(batch_sizes(b - a, batch_size)) for a, b in zip(bounds[:-1], bounds[1:]))


def _segments(order: np.ndarray, offsets: np.ndarray, start: int, end: int) -> tuple[tuple[int, int, int], ...]:
    """[start, end) of the stream as (shard, first, end) ranges of the shards' own object lists;
    ``offsets``: where each shard of ``order`` begins in the stream (and the stream's end)."""
    segments = []
    slot = int(np.searchsorted(offsets, start, side="right")) - 1
    while slot < len(order) and offsets[slot] < end:
        low, high = max(start, offsets[slot]), min(end, offsets[slot + 1])
        if low < high:
            segments.append((int(order[slot]), int(low - offsets[slot]), int(high - offsets[slot])))
        slot += 1
    return tuple(segments)


def epoch_windows(counts, seed: int, epoch: int, rank: int, world: int, batch_size: int, window: int) -> list[Window]:
    """The windows of one rank in one epoch, in batch order. ``counts``: training objects per shard."""
    counts = np.asarray(counts, dtype=np.int64)
    order = shard_order(len(counts), seed, epoch)
    offsets = np.concatenate([[0], np.cumsum(counts[order])])
    start, end = rank_range(int(counts.sum()), rank, world)
    bounds = window_bounds(start, end, batch_size, window)
    windows, first_batch = [], 0
    for index, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
        permuted = _generator(seed, epoch, 1, rank, index).permutation(high - low)
        cuts = np.cumsum([0] + batch_sizes(high - low, batch_size))
        batches = tuple(permuted[a:b] for a, b in zip(cuts[:-1], cuts[1:]))
        windows.append(Window(first_batch, _segments(order, offsets, low, high), batches))
        first_batch += len(batches)
    return windows
