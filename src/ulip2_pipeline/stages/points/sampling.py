"""Area-weighted surface sampling with colour, unit-sphere normalisation and FPS ordering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import fpsample
import numpy as np

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.meshes import FACE, MATERIAL, NONE, TEXTURE, VERTEX, Part


@dataclass
class SampledCloud:
    xyz: np.ndarray  # (N, 3) float32, normalised, farthest-point order
    rgb: np.ndarray  # (N, 3) uint8, same order
    center: np.ndarray  # (3,) float64: xyz = (world - center) / scale
    scale: float
    colour_sources: list[str]


def _texture_lookup(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest texel at ``uv`` (OBJ convention, v up), with glTF's default REPEAT wrapping."""
    height, width = image.shape[:2]
    u = np.mod(uv[:, 0], 1.0)
    v = np.mod(uv[:, 1], 1.0)
    x = np.minimum((u * width).astype(np.int64), width - 1)
    y = np.minimum(((1.0 - v) * height).astype(np.int64), height - 1)
    return image[y, x]


def _colour_samples(part: Part, faces: np.ndarray, bary: np.ndarray, default_rgba: np.ndarray) -> np.ndarray:
    """RGBA in 0..1 of samples at barycentric ``bary`` on the part's ``faces``."""
    corners = part.faces[faces]
    if part.colour_source == TEXTURE:
        uv = np.einsum("nk,nkd->nd", bary, part.uv[corners])
        return _texture_lookup(part.image, uv) / 255.0 * part.factor
    if part.colour_source == VERTEX:
        return np.einsum("nk,nkd->nd", bary, part.colours[corners].astype(np.float64)) / 255.0
    if part.colour_source == FACE:
        return part.colours[faces].astype(np.float64) / 255.0
    if part.colour_source == MATERIAL:
        return np.broadcast_to(part.colours, (len(faces), 4))
    return np.broadcast_to(default_rgba, (len(faces), 4))


class SurfaceSample(NamedTuple):
    xyz: np.ndarray  # (N, 3) float64, world space
    rgb: np.ndarray  # (N, 3) uint8
    colour_sources: list[str]
    centroid: np.ndarray  # (3,) exact area-weighted centroid of the whole surface


def _area_and_centroid_terms(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Per-face areas and the part's sum of area * triangle centroid, from one gather of the corners."""
    a, b, c = (part.vertices[part.faces[:, k]] for k in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return areas, (areas[:, None] * (a + b + c)).sum(axis=0) / 3.0


def sample_surface(
    parts: list[Part], count: int, rng: np.random.Generator, default_rgb: tuple[float, float, float]
) -> SurfaceSample:
    """``count`` points uniformly by area over all parts, with their colours."""
    terms = [_area_and_centroid_terms(part) for part in parts]
    areas = np.concatenate([t[0] for t in terms])
    cumulative = np.cumsum(areas)
    total = cumulative[-1]
    if not np.isfinite(total) or total <= 0.0:
        raise ObjectFailure("no_area", f"total surface area is {total!r}; every triangle is degenerate")
    centroid = sum(t[1] for t in terms) / total

    # random() < 1 gives draws below the total, so side="right" never runs past the last face with area.
    picks = np.searchsorted(cumulative, rng.random(count) * total, side="right")
    u, v = rng.random(count), rng.random(count)
    outside = u + v > 1.0
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    bary = np.stack([1.0 - u - v, u, v], axis=1)

    xyz = np.empty((count, 3))
    rgba = np.empty((count, 4))
    default_rgba = np.array([*default_rgb, 1.0])
    # Group the samples by part in one pass (scenes can have thousands of parts).
    part_starts = np.cumsum([0] + [len(p.faces) for p in parts])
    part_of = np.searchsorted(part_starts, picks, side="right") - 1
    by_part = np.argsort(part_of)  # any order within a part will do: each sample is computed on its own
    bounds = np.searchsorted(part_of[by_part], np.arange(len(parts) + 1))
    sources = []
    for index, part in enumerate(parts):
        mine = by_part[bounds[index] : bounds[index + 1]]
        if mine.size == 0:
            continue
        local = picks[mine] - part_starts[index]
        corners = part.vertices[part.faces[local]]
        xyz[mine] = np.einsum("nk,nkd->nd", bary[mine], corners)
        rgba[mine] = _colour_samples(part, local, bary[mine], default_rgba)
        sources.append(part.colour_source)
    rgb = np.clip(np.rint(rgba[:, :3] * 255.0), 0, 255).astype(np.uint8)
    return SurfaceSample(xyz, rgb, sorted(set(sources)), centroid)


def normalise(xyz: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre on ``center`` (the surface centroid) and scale the farthest point to radius 1."""
    centred = xyz - center
    scale = float(np.sqrt((centred**2).sum(axis=1).max()))
    if not np.isfinite(scale) or scale <= 0.0:
        raise ObjectFailure("no_area", "all sampled points coincide; the object has no extent")
    return (centred / scale).astype(np.float32), center, scale


def farthest_point_order(xyz: np.ndarray) -> np.ndarray:
    """A permutation putting ``xyz`` in farthest-point order: every prefix is an FPS subset.

    QuickFPS (bucketed kd-tree) gives the exact greedy order of vanilla FPS in a
    fraction of its O(N^2) time; it is deterministic for a given input.
    """
    if len(xyz) < 2:
        return np.arange(len(xyz), dtype=np.int64)
    height = min(5, int(np.log2(len(xyz))))  # the kd-tree may not be deeper than the points allow
    order = np.asarray(fpsample.bucket_fps_kdline_sampling(xyz, len(xyz), h=height, start_idx=0), dtype=np.int64)
    return _complete_permutation(order, len(xyz))


def _complete_permutation(order: np.ndarray, count: int) -> np.ndarray:
    """``order`` with repeated indices dropped and the missing ones appended.

    Once every point left coincides with one already taken, fpsample repeats an index and
    leaves another out; those points are all at distance 0, so any order of them is greedy.
    """
    _, first = np.unique(order, return_index=True)
    if len(first) == len(order):
        return order
    kept = order[np.sort(first)]
    return np.concatenate([kept, np.setdiff1d(np.arange(count, dtype=np.int64), kept)])


def sample_object(parts: list[Part], count: int, seed_sequence, default_rgb) -> SampledCloud:
    rng = np.random.default_rng(seed_sequence)
    surface = sample_surface(parts, count, rng, default_rgb)
    xyz, center, scale = normalise(surface.xyz, surface.centroid)
    order = farthest_point_order(xyz)
    return SampledCloud(
        xyz=xyz[order], rgb=surface.rgb[order], center=center, scale=scale, colour_sources=surface.colour_sources
    )


__all__ = [
    "SampledCloud",
    "SurfaceSample",
    "sample_object",
    "sample_surface",
    "normalise",
    "farthest_point_order",
    "TEXTURE",
    "VERTEX",
    "FACE",
    "MATERIAL",
    "NONE",
]
