"""Held-out cross-modal retrieval: a quality signal for a dataset that has no labelled benchmark.

Each held-out object (``splits.holdout``: never trained on) is a query: its point cloud, encoded by
the 3D encoder, is ranked against the CLIP text features (3D→text) and the CLIP image features
(3D→image) of every held-out object; the true target is the object's own. Recall@k is the share
of queries whose true target is among the k best, and the ranks say how far off the rest are.

One target per object and modality, from ONE view: the image feature of a view, and the text
feature of that view's first kept caption (the caption training pairs with that view). Not a mean
over views: a mean of several views' features is a smoothed vector nobody queries with, and it sits
closer to every object's centre than a real photo or caption does, which would flatter the encoder.
The view is chosen by a seeded hash of the uid, among the views that have a kept caption, so the
targets are the same on every run, machine and number of workers.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from ulip2_pipeline import point_columns
from ulip2_pipeline.train.loader import EMBED_COLUMNS, ShardError, open_shard
from ulip2_pipeline.train.splits import holdout

log = logging.getLogger(__name__)

TRIPLET_COLUMNS = ("uid", "xyz", "rgb", "views", "kept")
# Why an object is left out of the retrieval sets (the counts are returned alongside the metrics).
NO_EMBEDDING = "no embedding row"
NO_CAPTION = "no kept caption"
MISMATCH = "embedding row does not match its triplet"
DUPLICATE = "duplicate uid"
RANK_CHUNK = 1024  # queries ranked at a time: the similarity matrix of 10k held-out objects is never whole


def _ranks(queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of target i for query i: the number of targets scoring at least as high as the
    true one, the true one included. Ties count against the model (a tie is not a hit), and a query
    whose true similarity is not finite (NaN features) gets the worst rank."""
    count = targets.shape[0]
    ranks = []
    for start in range(0, queries.shape[0], RANK_CHUNK):
        chunk = queries[start : start + RANK_CHUNK]
        scores = chunk @ targets.t()
        true = scores[torch.arange(chunk.shape[0]), torch.arange(start, start + chunk.shape[0])]
        at_least = (scores >= true[:, None]).sum(dim=1)
        ranks.append(torch.where(torch.isfinite(true), at_least, torch.full_like(at_least, count)))
    return torch.cat(ranks)


def retrieval_metrics(queries: torch.Tensor, targets: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """Row i of ``queries`` matches row i of ``targets``; cosine similarity (both L2-normalised).

    Returns recall@k in percent for each k (``r1``, ``r5``, ``r10``), the 1-based rank of the true
    target (``median_rank``, ``mean_rank``), ``samples`` and the recall@1 of a random ranking
    (``chance_r1`` = 100 / N). A rank counts every target scoring at least as high as the true one,
    so tied targets (say two objects with the same caption) are ranked above it: ties never flatter."""
    if queries.ndim != 2 or targets.ndim != 2 or queries.shape[0] != targets.shape[0]:
        raise ValueError(f"queries {tuple(queries.shape)} and targets {tuple(targets.shape)}: want (N, D) and (N, D)")
    if queries.shape[1] != targets.shape[1]:
        raise ValueError(
            f"the encoder's features have {queries.shape[1]} dims and the CLIP targets {targets.shape[1]}: "
            "compare features of the same space"
        )
    count = queries.shape[0]
    if count == 0:
        raise ValueError("no samples to rank")
    ranks = _ranks(F.normalize(queries.float().cpu(), dim=-1), F.normalize(targets.float().cpu(), dim=-1))
    result = {f"r{k}": round(100 * (ranks <= k).float().mean().item(), 2) for k in ks}
    result.update(
        {
            "median_rank": float(np.median(ranks.numpy())),
            "mean_rank": round(ranks.float().mean().item(), 2),
            "samples": int(count),
            "chance_r1": round(100 / count, 2),
        }
    )
    return result


def chosen_view(uid: str, candidates: list[int], seed: int = 0) -> int:
    """One of ``candidates``, fixed by the seed and the uid (hashlib: the same in every process)."""
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).hexdigest()
    return candidates[int(digest[:12], 16) % len(candidates)]


@dataclass
class HeldoutPairs:
    """Held-out objects with a cloud and both targets, in triplet order. ``clouds``: (xyz (N, 3)
    float32, rgb (N, 3) float32 in [0, 1]); ``text`` and ``image``: (objects, D) CLIP features;
    ``views``: the index (into the triplet's ``views``) whose features are the targets."""

    uids: list[str] = field(default_factory=list)
    clouds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    text: torch.Tensor | None = None
    image: torch.Tensor | None = None
    views: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.uids)


def _wanted_rows(shard: pq.ParquetFile, path, keep) -> np.ndarray:
    """Row numbers whose uid passes ``keep`` (only the uid column is read)."""
    try:
        uids = shard.read(columns=["uid"]).column("uid").to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: unreadable (file truncated or corrupt): {exc}") from exc
    return np.asarray([i for i, uid in enumerate(uids) if keep(uid)], dtype=np.int64)


def _read_wanted(shard: pq.ParquetFile, path, columns, rows: np.ndarray):
    """The ``rows`` of a shard, one row group in memory at a time, as lists of dicts (points as NumPy)."""
    start = 0
    for group in range(shard.metadata.num_row_groups):
        size = shard.metadata.row_group(group).num_rows
        inside = rows[(rows >= start) & (rows < start + size)] - start
        if len(inside):
            try:
                table = shard.read_row_group(group, columns=list(columns))
            except (pa.ArrowException, OSError) as exc:
                raise ShardError(f"{path}: unreadable row group (file truncated or corrupt): {exc}") from exc
            yield point_columns.rows_with_points(table.take(pa.array(inside)))
        start += size


def _heldout_triplets(triplet_paths, fraction: float, num_points: int, skipped: dict) -> dict[str, dict]:
    """uid -> held-out triplet row (cloud sliced to ``num_points``), in triplet order."""
    rows: dict[str, dict] = {}
    for path in triplet_paths:
        shard = open_shard(path, TRIPLET_COLUMNS)
        wanted = _wanted_rows(shard, path, lambda uid: holdout(uid, fraction))
        for group in _read_wanted(shard, path, TRIPLET_COLUMNS, wanted):
            for row in group:
                if row["uid"] in rows:
                    skipped[DUPLICATE] = skipped.get(DUPLICATE, 0) + 1
                    continue
                row["xyz"] = np.array(row["xyz"][:num_points], dtype=np.float32)
                row["rgb"] = row["rgb"][:num_points].astype(np.float32) / 255.0
                rows[row["uid"]] = row
    return rows


def _embedding_rows(embed_paths, uids: set[str]) -> dict[str, dict]:
    """uid -> embedding row, for the uids asked for, wherever they sit in the embedding shards."""
    rows: dict[str, dict] = {}
    for path in embed_paths:
        shard = open_shard(path, EMBED_COLUMNS)
        columns = EMBED_COLUMNS + tuple(c for c in ("views", "captions") if c in shard.schema_arrow.names)
        wanted = _wanted_rows(shard, path, lambda uid: uid in uids)
        for group in _read_wanted(shard, path, columns, wanted):
            for row in group:
                rows.setdefault(row["uid"], row)
    return rows


def _targets(triplet: dict, embedding: dict, seed: int) -> tuple[int, list[float], list[float]] | str:
    """(view index, text feature, image feature), or why the object has none. Embedding rows hold an
    image feature per view, in the triplet's view order, and a text feature per kept caption, view
    after view (stages/embed.py), as the training loader reads them."""
    kept = triplet["kept"]
    candidates = [i for i, captions in enumerate(kept) if captions]
    if not candidates:
        return NO_CAPTION
    images, texts = embedding["image_embeddings"], embedding["caption_embeddings"]
    if len(images) != len(triplet["views"]) or len(texts) != sum(len(k or []) for k in kept):
        return MISMATCH
    if "views" in embedding and list(embedding["views"]) != list(triplet["views"]):
        return MISMATCH
    view = chosen_view(triplet["uid"], candidates, seed)
    caption = sum(len(k or []) for k in kept[:view])
    if "captions" in embedding and embedding["captions"][caption] != kept[view][0]:
        return MISMATCH
    return view, texts[caption], images[view]


def heldout_pairs(triplet_paths, embed_paths, holdout_fraction: float, num_points: int, seed: int = 0) -> HeldoutPairs:
    """Every held-out object that has points and embeddings: its cloud (the first ``num_points`` of
    the FPS-ordered cloud, rgb / 255), ONE text target and ONE image target, both of the view chosen
    by ``chosen_view`` (see the module's note). Embeddings join triplets by uid, not position; an
    object left out is counted in ``skipped`` by reason (no embedding row, no kept caption in any
    view, an embedding row built from other views or captions, a uid seen twice)."""
    skipped: dict[str, int] = {}
    triplets = _heldout_triplets([str(p) for p in triplet_paths], holdout_fraction, num_points, skipped)
    embeddings = _embedding_rows([str(p) for p in embed_paths], set(triplets))
    pairs = HeldoutPairs(skipped=skipped)
    texts, images = [], []
    for uid, triplet in triplets.items():
        found = embeddings.get(uid)
        chosen = NO_EMBEDDING if found is None else _targets(triplet, found, seed)
        if isinstance(chosen, str):
            skipped[chosen] = skipped.get(chosen, 0) + 1
            continue
        view, text, image = chosen
        pairs.uids.append(uid)
        pairs.clouds.append((triplet["xyz"], triplet["rgb"]))
        pairs.views.append(view)
        texts.append(text)
        images.append(image)
    if texts:
        pairs.text = torch.tensor(np.asarray(texts, dtype=np.float32))
        pairs.image = torch.tensor(np.asarray(images, dtype=np.float32))
    if skipped:
        log.warning("held-out retrieval: %d objects, skipped %s", len(pairs), skipped)
    return pairs


@torch.inference_mode()
def encode_clouds(encoder, clouds, device, batch_size: int = 32) -> torch.Tensor:
    """(objects, D) features of (xyz, rgb) clouds, on the CPU, as ``zeroshot.evaluate`` encodes them."""
    features = []
    for start in range(0, len(clouds), batch_size):
        chunk = clouds[start : start + batch_size]
        xyz = torch.from_numpy(np.stack([c[0] for c in chunk])).float().to(device)
        rgb = torch.from_numpy(np.stack([c[1] for c in chunk])).float().to(device)
        features.append(encoder(xyz, rgb).float().cpu())
    return torch.cat(features)


def heldout_retrieval(
    encoder,
    triplet_paths,
    embed_paths,
    holdout_fraction: float,
    num_points: int,
    device,
    batch_size: int = 32,
    seed: int = 0,
) -> dict:
    """3D→text and 3D→image retrieval among the held-out objects, ``encoder`` in eval mode (its
    training mode is restored afterwards). ``{"text": retrieval_metrics, "image": retrieval_metrics,
    "objects": n, "skipped": m, "skipped_reasons": {reason: count}}``; with fewer than two objects to
    rank, ``{"error": ..., "objects": n, "skipped": m, "skipped_reasons": ...}``."""
    pairs = heldout_pairs(triplet_paths, embed_paths, holdout_fraction, num_points, seed)
    count, skipped = len(pairs), dict(pairs.skipped)
    counts = {"objects": count, "skipped": sum(skipped.values()), "skipped_reasons": skipped}
    if count < 2:
        return {"error": "fewer than 2 held-out objects", **counts}
    training = encoder.training
    encoder.eval()
    try:
        features = encode_clouds(encoder, pairs.clouds, device, batch_size)
    finally:
        encoder.train(training)
    return {
        "text": retrieval_metrics(features, pairs.text),
        "image": retrieval_metrics(features, pairs.image),
        **counts,
    }
