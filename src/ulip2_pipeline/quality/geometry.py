"""Geometry quality flags: detached outlier points, and near-duplicate shapes (NumPy and SciPy only).

- ``outlier_geometry``: a few points far from the body, which would shrink the body when the
  whole cloud is normalised to the unit sphere.
- ``shape_fingerprint`` / ``fingerprint_distance`` / ``find_duplicates``: a rotation-, scale- and
  translation-invariant descriptor of a cloud, and the earlier object each near-copy repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

# Fingerprints at most this far apart are duplicates. Measured on surface samples of seven shapes (cube, sphere,
# cylinder, torus, cone, chair, table): a rotated, scaled, translated, re-sampled copy lies at most 0.016 away with
# 10,000 points (0.038 with 2,048); two different shapes at least 0.12. A box stretched along one axis is a
# duplicate of the cube up to about 10 % (0.034), not from 20 % (0.075; 30 %: 0.117).
DUPLICATE_DISTANCE = 0.05

_PAIR_SEED = 0x5EED  # the fixed seed that draws the fingerprint's point pairs
_PAIRS = 65_536  # point pairs per fingerprint
# The axial profile counts from an eigenvalue gap (eigenvalues sum to 1) of _AXIS_GAP[0] (above the sampling
# noise of a cube's or a sphere's equal eigenvalues, about 0.01 at 2,048 points) and in full from _AXIS_GAP[1].
_AXIS_GAP = (0.03, 0.1)
_PROJECTED_DIMS = 8  # fingerprint dimensions the duplicate search indexes (candidates are checked in full)
_NEIGHBOURS = 16  # candidates fetched per object; an object with more takes the halving search
_QUERY_BATCH = 16_384  # objects queried at once (memory: _QUERY_BATCH x _NEIGHBOURS fingerprint pairs)
_PROBES = 4  # nearest projected candidates checked per block by the halving search
_LEAF = 16  # blocks of this many objects or fewer are scanned


@dataclass(frozen=True)
class OutlierCheck:
    """The verdict of ``outlier_geometry``.

    ``outlier_fraction``: the share of points that are detached outliers (0 when none).
    ``spread``: the farthest point's distance from the median point in core radii (the radius
    holding all but ``max_fraction`` of the points); about 1 for a compact body, 20+ when a
    speck lies far away.
    """

    flagged: bool
    outlier_fraction: float
    spread: float


def _points(xyz: np.ndarray) -> np.ndarray:
    points = np.asarray(xyz, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected an (N, 3) array of points, got shape {points.shape}")
    return points


def outlier_geometry(
    xyz: np.ndarray, *, max_fraction: float = 0.02, min_spread: float = 2.0, min_gap: float = 0.5
) -> OutlierCheck:
    """Flags a cloud where a few points lie far from, and detached from, the rest.

    Robust core: the median point is the centre; the core radius is the distance from it within
    which all but ``max(1, max_fraction * N)`` points lie, so a speck of that size cannot move it.
    A point is far when it lies more than ``min_spread`` core radii from the centre, and an
    outlier when it is far and detached: no chain of hops shorter than ``min_gap`` core radii
    joins it to the points that are not far (a thin pole or antenna growing out of the body stays
    attached; a speck across empty space does not). The cloud is flagged when there are from one
    to ``max(1, max_fraction * N)`` outliers; a larger group far out is inside the core radius, so
    it is a second part of the object, not a speck.

    Deterministic; one k-d tree over the points, built only when some point is far.
    """
    points = _points(xyz)
    n = len(points)
    if n < 2:
        return OutlierCheck(flagged=False, outlier_fraction=0.0, spread=1.0)
    centre = np.median(points, axis=0)
    distance = np.linalg.norm(points - centre, axis=1)
    allowed = min(n - 1, max(1, int(max_fraction * n)))
    core_radius = float(np.partition(distance, n - allowed - 1)[n - allowed - 1])
    farthest = float(distance.max())
    if core_radius > 0:
        spread = farthest / core_radius
    else:
        spread = float("inf") if farthest > 0 else 1.0
    far = distance > min_spread * core_radius
    if not far.any():
        return OutlierCheck(flagged=False, outlier_fraction=0.0, spread=spread)
    link = min_gap * core_radius
    far_points = points[far]
    gap, _ = cKDTree(points[~far]).query(far_points, k=1)
    attached = gap <= link
    if attached.any() and not attached.all():  # far points reached through other far points are attached too
        pairs = cKDTree(far_points).query_pairs(link, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(far_points),) * 2)
        _, label = connected_components(graph, directed=False)
        attached = np.isin(label, label[attached])
    outliers = int(np.count_nonzero(~attached))
    return OutlierCheck(flagged=0 < outliers <= allowed, outlier_fraction=outliers / n, spread=spread)


def shape_fingerprint(xyz: np.ndarray, *, bins: int = 32) -> np.ndarray:
    """A descriptor of a cloud's shape, invariant to rotation, reflection, uniform scale, translation,
    the order of the points and which points sampled the surface.

    The cloud is centred at its centroid and scaled to unit RMS radius. The descriptor holds four
    blocks, each a float32 vector: ``bins`` quantiles of the points' distances to the centroid, ``bins``
    quantiles of the distances between ``_PAIRS`` point pairs (the D1 and D2 shape distributions, as
    quantile functions so that the Euclidean distance between two fingerprints approximates the
    Wasserstein-2 distance between the distributions), the covariance eigenvalues, largest first
    (they sum to 1), and the axial profile (``_axial_profile``). The profiles are divided by
    sqrt(bins) so that each block's part of a fingerprint distance is its RMS difference. The pairs are drawn with a fixed seed over the points
    put in a canonical order (by distance to the centroid, then by coordinate), so the same points in
    any order give the same fingerprint. A cloud of fewer than two distinct points gives zeros.
    """
    points = _points(xyz)
    n = len(points)
    size = 4 * bins + 3
    centred = points - points.mean(axis=0)
    rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", centred, centred)))) if n else 0.0
    if n < 2 or rms == 0:
        return np.zeros(size, dtype=np.float32)
    unit = centred / rms
    radius = np.linalg.norm(unit, axis=1)
    order = np.lexsort((unit[:, 2], unit[:, 1], unit[:, 0], radius))
    unit = unit[order]
    rng = np.random.default_rng(_PAIR_SEED)
    first = rng.integers(0, n, _PAIRS)
    second = (first + rng.integers(1, n, _PAIRS)) % n  # never a point with itself
    pair_distance = np.linalg.norm(unit[first] - unit[second], axis=1)
    levels = (np.arange(bins) + 0.5) / bins
    scale = 1.0 / np.sqrt(bins)
    values, vectors = np.linalg.eigh(unit.T @ unit / n)
    eigen, vectors = values[::-1], vectors[:, ::-1]
    return np.concatenate(
        [
            np.quantile(radius, levels) * scale,
            np.quantile(pair_distance, levels) * scale,
            eigen,
            _axial_profile(unit, eigen, vectors, levels) * scale,
        ]
    ).astype(np.float32)


def _axial_profile(unit: np.ndarray, eigen: np.ndarray, vectors: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of each point's height along, and distance from, the principal axis most set apart from
    the other two (by its eigenvalue): a cylinder's points sit at one distance from its axis, a box's do
    not, which the distance profiles above barely tell apart. Weighted by how well that axis is defined
    (0 for a cube or a sphere, whose axes are arbitrary, so re-sampling cannot move their fingerprint)."""
    gaps = [min(abs(eigen[k] - eigen[j]) for j in range(3) if j != k) for k in range(3)]
    axis = int(np.argmax(gaps))
    weight = float(np.clip((gaps[axis] - _AXIS_GAP[0]) / (_AXIS_GAP[1] - _AXIS_GAP[0]), 0.0, 1.0))
    height = unit @ vectors[:, axis]
    across = np.linalg.norm(unit - np.outer(height, vectors[:, axis]), axis=1)
    return weight * np.concatenate([np.quantile(np.abs(height), levels), np.quantile(across, levels)])


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Euclidean distance between two fingerprints (the metric ``find_duplicates`` indexes)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def find_duplicates(
    uids: list[str], fingerprints: np.ndarray, *, threshold: float = DUPLICATE_DISTANCE
) -> dict[str, str]:
    """Each near-copy's uid mapped to the uid of the first earlier object within ``threshold`` of it.

    Order matters: an object is a duplicate only of objects before it in ``uids``, and maps to the
    earliest of those within ``threshold`` (distance <= threshold). Matches are direct, never chained:
    if B is within threshold of A and C of B, C maps to A when C is within threshold of A too, and to
    B otherwise (B itself maps to A). To keep one object of each group, drop every key.

    Scales to 800k objects without comparing all pairs: k-d trees index the fingerprints projected onto
    their leading ``_PROJECTED_DIMS`` principal axes (an orthonormal projection never lengthens a
    distance, so no duplicate is missed) and every candidate they return is checked at full dimension.
    An object with fewer than ``_NEIGHBOURS`` candidates checks them all; one in a denser crowd finds
    its earliest match by halving the order (is there a match among the first half of this range of
    objects? then search it, else the second half), so a crowd of k near-copies costs k log n checks,
    not k^2. Deterministic: the result depends only on the inputs and their order.
    """
    prints = np.asarray(fingerprints, dtype=np.float64)
    if prints.ndim != 2 or len(prints) != len(uids):
        raise ValueError(
            f"expected one fingerprint row per uid: {len(uids)} uids, fingerprints of shape {prints.shape}"
        )
    n = len(uids)
    if n < 2:
        return {}
    centred = prints - prints.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)
    projected = centred @ axes[:, ::-1][:, : min(_PROJECTED_DIMS, prints.shape[1])]
    radius = threshold * (1 + 1e-9) + 1e-12  # a pair at exactly the threshold survives the projection's rounding
    tree = cKDTree(projected)
    earliest = np.arange(n)  # each object's earliest match; itself while none earlier is known
    crowded = []
    for start in range(0, n, _QUERY_BATCH):
        query = np.arange(start, min(n, start + _QUERY_BATCH))
        _, found = tree.query(projected[query], k=list(range(1, _NEIGHBOURS + 1)), distance_upper_bound=radius)
        valid = found < n
        crowded.append(query[valid.all(axis=1)])  # more candidates than were fetched: left to the halving search
        row, col = np.nonzero(valid & (found < query[:, None]))
        candidate = found[row, col]
        close = np.linalg.norm(prints[query[row]] - prints[candidate], axis=1) <= threshold
        np.minimum.at(earliest, query[row[close]], candidate[close])
    crowded = np.concatenate(crowded)
    if len(crowded):
        earliest[crowded] = _earliest_by_halving(prints, projected, crowded, threshold, radius)
    return {uids[i]: uids[j] for i, j in enumerate(earliest.tolist()) if j < i}


def _within(prints: np.ndarray, query: np.ndarray, candidate: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each query's fingerprint lies within ``threshold`` of the paired candidate's (full dimension)."""
    return np.linalg.norm(prints[query] - prints[candidate], axis=-1) <= threshold


def _earliest_by_halving(
    prints: np.ndarray, projected: np.ndarray, queries: np.ndarray, threshold: float, radius: float
) -> np.ndarray:
    """The earliest object within ``threshold`` of each query (the query itself when none is earlier).

    Binary search over the order: the objects are split into aligned blocks of halving size; each
    query keeps the block holding its earliest match (at first, all objects: the query matches
    itself) and moves to the block's first half when some object there matches, else to the second.
    A match in a block is looked for among the ``_PROBES`` nearest of its objects in projection,
    checked at full dimension; when all of them are projected candidates but none matches, the
    block's whole projected ball is checked. Blocks of ``_LEAF`` objects or fewer are scanned.
    """
    n = len(prints)
    size = 1 << (n - 1).bit_length()
    block = np.zeros(len(queries), dtype=np.int64)
    while size > _LEAF:
        size //= 2
        first_half = 2 * block
        found = np.zeros(len(queries), dtype=bool)
        for half, members in _groups(first_half):
            lo, hi = half * size, min(n, (half + 1) * size)
            found[members] = _any_within(prints, projected, queries[members], lo, hi, threshold, radius)
        block = np.where(found, first_half, first_half + 1)
    earliest = np.empty(len(queries), dtype=np.int64)
    for leaf, members in _groups(block):
        lo, hi = leaf * size, min(n, (leaf + 1) * size)
        for start in range(0, len(members), _QUERY_BATCH):
            part = members[start : start + _QUERY_BATCH]
            close = _within(prints, queries[part, None], np.arange(lo, hi)[None, :], threshold)
            earliest[part] = lo + close.argmax(axis=1)  # the first match; the search keeps one in every block
    return earliest


def _groups(keys: np.ndarray):
    """(key, positions holding it) for each distinct key, in key order."""
    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    return zip(distinct.tolist(), np.split(order, starts[1:]))


def _any_within(
    prints: np.ndarray, projected: np.ndarray, queries: np.ndarray, lo: int, hi: int, threshold: float, radius: float
) -> np.ndarray:
    """Whether each query has an object within ``threshold`` among objects lo..hi-1."""
    tree = cKDTree(projected[lo:hi])
    probes = list(range(1, min(_PROBES, hi - lo) + 1))
    answer = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), _QUERY_BATCH):
        part = queries[start : start + _QUERY_BATCH]
        _, found = tree.query(projected[part], k=probes, distance_upper_bound=radius)
        valid = found < hi - lo
        close = valid & _within(prints, part[:, None], lo + np.minimum(found, hi - lo - 1), threshold)
        answer[start : start + len(part)] = close.any(axis=1)
        for position in np.nonzero(~close.any(axis=1) & valid.all(axis=1))[0]:  # all probes false candidates:
            ball = lo + np.asarray(tree.query_ball_point(projected[part[position]], radius), dtype=np.int64)
            answer[start + position] = _within(prints, np.full(len(ball), part[position]), ball, threshold).any()
    return answer
