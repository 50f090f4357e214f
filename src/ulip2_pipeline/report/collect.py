"""What the report shows of a dataset, gathered shard by shard with bounded memory.

Pass one reads only light columns: the triplets' ``uid`` (to draw the object sample)
and the ranked shards (scores, kept captions; no images). It keeps fixed-size
histograms, the sample (the objects whose uid hashes lowest: stable, and independent
of shard order and count) and the lowest- and highest-scored kept captions. Pass two
reads the heavy columns (images, points, cameras) of only the row groups that hold a
chosen object.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ulip2_pipeline import point_columns

SCORE_RANGE = (-1.0, 1.0)  # cosine similarity
SCORE_BINS = 2000  # fine bins; charts merge them over the occupied range


def sample_key(uid: str) -> int:
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")


@dataclass(frozen=True, order=True)
class KeptCaption:
    """The kept caption(s) of one view and the CLIP score of the best (None: nothing was kept)."""

    score: float | None
    uid: str
    view: int
    kept: tuple[str, ...]
    shard: str = ""
    candidates: tuple[tuple[str, float], ...] = ()  # every caption of the view with its score


@dataclass
class DatasetDigest:
    sample_size: int
    extremes: int
    objects: int = 0
    views: int = 0
    captions: int = 0
    empty_captions: int = 0
    views_without_kept: int = 0
    kept_score_sum: float = 0.0
    scores_all: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    scores_kept: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    caption_words: Counter = field(default_factory=Counter)
    empty_per_view: Counter = field(default_factory=Counter)
    # max-heap by sample key (stored negated): the sample_size objects with the lowest keys
    _sample: list = field(default_factory=list)
    sample_views: dict = field(default_factory=dict)  # uid -> {view: KeptCaption}
    lowest: list = field(default_factory=list)  # KeptCaption, lowest score first
    highest: list = field(default_factory=list)  # KeptCaption, highest score first

    @property
    def mean_kept_score(self) -> float | None:
        kept = int(self.scores_kept.sum())
        return self.kept_score_sum / kept if kept else None

    @property
    def sample(self) -> list[tuple[str, str]]:
        """(uid, shard) of the sampled objects, in uid order."""
        return sorted((uid, shard) for _, uid, shard in self._sample)

    def _offer_object(self, uid: str, shard: str) -> None:
        entry = (-sample_key(uid), uid, shard)
        if len(self._sample) < self.sample_size:
            heapq.heappush(self._sample, entry)
        elif entry > self._sample[0]:
            _, dropped, _ = heapq.heapreplace(self._sample, entry)
            self.sample_views.pop(dropped, None)

    def add_triplet_uids(self, uids: list[str], shard: str) -> None:
        self.objects += len(uids)
        if self.sample_size:
            for uid in uids:
                self._offer_object(uid, shard)

    def add_ranked(self, table: pa.Table, shard: str) -> None:
        """One ranked shard: statistics, extremes, and the kept captions of sampled objects."""
        if table.num_rows == 0:
            return
        captions = table.column("captions").combine_chunks()
        flat_captions = captions.flatten()
        parents = pc.list_parent_indices(captions).to_numpy()
        empty = pc.fill_null(pc.equal(flat_captions, ""), True).to_numpy(zero_copy_only=False)
        words = word_counts(flat_captions)
        self.views += table.num_rows
        self.captions += len(flat_captions)
        self.empty_captions += int(empty.sum())
        self.caption_words.update(Counter(words[~empty].tolist()))
        self.empty_per_view.update(Counter(np.bincount(parents[empty], minlength=table.num_rows).tolist()))

        scores = _list_values(table.column("scores"))
        self.scores_all += _bin(np.concatenate(scores) if scores else np.zeros(0))
        best = kept_scores(table)
        has_kept = np.isfinite(best)
        self.views_without_kept += int((~has_kept).sum())
        self.scores_kept += _bin(best[has_kept])
        self.kept_score_sum += float(best[has_kept].sum())

        uids = table.column("uid").to_pylist()
        views = table.column("view").to_pylist()
        kept = table.column("kept")
        all_captions, all_scores = table.column("captions"), table.column("scores")

        def record(i: int) -> KeptCaption:
            score = float(best[i]) if has_kept[i] else None
            candidates = tuple(zip(all_captions[i].as_py(), all_scores[i].as_py()))
            return KeptCaption(score, uids[i], int(views[i]), tuple(kept[i].as_py()), shard, candidates)

        scored = np.flatnonzero(has_kept)
        if self.extremes and len(scored):
            keep = 2 * self.extremes  # spares, for views whose object is not in the triplets
            order = scored[np.lexsort((scored, best[scored]))]
            self.lowest = sorted(
                self.lowest + [record(i) for i in order[:keep]], key=lambda c: (c.score, c.uid, c.view)
            )[:keep]
            self.highest = sorted(
                self.highest + [record(i) for i in order[::-1][:keep]], key=lambda c: (-c.score, c.uid, c.view)
            )[:keep]
        sampled = {uid for _, uid, _ in self._sample}
        for i, uid in enumerate(uids):
            if uid in sampled:
                self.sample_views.setdefault(uid, {})[int(views[i])] = record(i)

    def score_histogram(self, bins: int = 40) -> tuple[list[float], dict[str, list[int]]]:
        """Edges and counts (all captions, kept captions) merged to ``bins`` bins over the occupied range."""
        occupied = np.flatnonzero(self.scores_all + self.scores_kept)
        if len(occupied) == 0:
            return [SCORE_RANGE[0], SCORE_RANGE[1]], {"all captions": [0], "kept": [0]}
        first, last = occupied[0], occupied[-1] + 1
        width = max(1, -(-(last - first) // bins))
        last = first + width * -(-(last - first) // width)
        step = (SCORE_RANGE[1] - SCORE_RANGE[0]) / SCORE_BINS
        edges = [SCORE_RANGE[0] + (first + i * width) * step for i in range((last - first) // width + 1)]

        def merge(counts: np.ndarray) -> list[int]:
            padded = np.zeros(last - first, np.int64)
            available = counts[first : min(last, SCORE_BINS)]
            padded[: len(available)] = available
            return padded.reshape(-1, width).sum(axis=1).tolist()

        return edges, {"all captions": merge(self.scores_all), "kept": merge(self.scores_kept)}


def word_counts(captions: pa.Array) -> np.ndarray:
    """Words (runs of non-whitespace) per caption; a regex count is three times slower."""
    tokens = pc.utf8_split_whitespace(captions)  # runs of spaces leave empty tokens: not words
    owner = pc.list_parent_indices(tokens).to_numpy()
    non_empty = pc.not_equal(tokens.flatten(), "").to_numpy(zero_copy_only=False)
    return np.bincount(owner[non_empty], minlength=len(captions))


def _list_values(column: pa.ChunkedArray) -> list[np.ndarray]:
    return [chunk.flatten().to_numpy(zero_copy_only=False).astype(np.float64) for chunk in column.chunks]


def _bin(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, SCORE_RANGE[0], SCORE_RANGE[1])
    counts, _ = np.histogram(clipped, bins=SCORE_BINS, range=SCORE_RANGE)
    return counts


def kept_scores(table: pa.Table) -> np.ndarray:
    """Per ranked view, the score of its best kept caption (``scores[top_k[0]]``); NaN where nothing was kept."""
    scores = table.column("scores").combine_chunks()
    top_k = table.column("top_k").combine_chunks()
    score_values = scores.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    score_start = _starts(scores)
    top_values = top_k.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    top_start = _starts(top_k)
    lengths = pc.list_value_length(top_k).to_numpy(zero_copy_only=False)
    out = np.full(table.num_rows, np.nan)
    has = lengths > 0
    out[has] = score_values[score_start[has] + top_values[top_start[has]]]
    return out


def _starts(array: pa.ListArray) -> np.ndarray:
    offsets = array.offsets.to_numpy()
    return (offsets[:-1] - offsets[0]).astype(np.int64)


def shard_name(path) -> str:
    return Path(path).stem


def collect(triplet_paths: list, ranked_paths: list, sample_size: int, extremes: int) -> DatasetDigest:
    """Pass one over every shard (see the module docstring)."""
    digest = DatasetDigest(sample_size=sample_size, extremes=extremes)
    ranked_by_shard = {shard_name(p): p for p in ranked_paths}
    for path in sorted(triplet_paths, key=shard_name):
        shard = shard_name(path)
        digest.add_triplet_uids(pq.read_table(path, columns=["uid"]).column("uid").to_pylist(), shard)
        if shard in ranked_by_shard:
            digest.add_ranked(
                pq.read_table(ranked_by_shard[shard], columns=["uid", "view", "captions", "scores", "top_k", "kept"]),
                shard,
            )
    return digest


def read_objects(triplet_paths: list, wanted: dict[str, set[str]], columns: list[str]) -> dict[str, dict]:
    """Rows of the ``wanted`` uids (per shard), ``columns`` only, reading just the row groups that hold them.

    ``xyz`` and ``rgb`` come back as (N, 3) NumPy arrays, the rest as Python values.
    """
    rows: dict[str, dict] = {}
    by_shard = {shard_name(p): p for p in triplet_paths}
    for shard, uids in sorted(wanted.items()):
        if not uids or shard not in by_shard:
            continue
        file = pq.ParquetFile(by_shard[shard])
        value_set = pa.array(sorted(uids), pa.string())
        for group in range(file.num_row_groups):
            mask = pc.is_in(file.read_row_group(group, columns=["uid"]).column("uid"), value_set=value_set)
            if not pc.any(mask).as_py():
                continue
            table = file.read_row_group(group, columns=["uid", *[c for c in columns if c != "uid"]]).filter(mask)
            for row in point_columns.rows_with_points(table):
                rows[row["uid"]] = row
    return rows
