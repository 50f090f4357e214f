"""How much of a rendered object a viewer can see: coverage, visible fraction and bounding box of one view.

The object's silhouette is where the render's alpha is at least one half. A silhouette pixel
is *visible* when, composited over the background, it differs from the background by more
than ``VISIBLE_DELTA`` (of 255) in some channel: a lit white surface clipped to 255 on a
white background is part of the silhouette but not visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VISIBLE_DELTA = 12
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ViewQuality:
    coverage: float  # silhouette pixels / all pixels
    visible_fraction: float  # visible silhouette pixels / silhouette pixels (0 when there is no silhouette)
    bbox: tuple[int, int, int, int] | None  # silhouette's x0, y0, x1, y1 in pixels (end exclusive); None if empty


def composite(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Straight-alpha RGBA (uint8, H x W x 4) over an opaque background, as float RGB in 0..255."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return rgba[..., :3].astype(np.float32) * alpha + np.asarray(background, np.float32) * (1.0 - alpha)


def view_quality(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> ViewQuality:
    """The view's quality figures from its RGBA render (straight alpha, as Blender writes PNGs)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an H x W x 4 RGBA image, got shape {rgba.shape}")
    silhouette = rgba[..., 3] >= 128
    count = int(silhouette.sum())
    if count == 0:
        return ViewQuality(coverage=0.0, visible_fraction=0.0, bbox=None)
    difference = np.abs(composite(rgba, background) - np.asarray(background, np.float32)).max(axis=2)
    visible = int((difference[silhouette] > VISIBLE_DELTA).sum())
    rows, cols = np.nonzero(silhouette.any(axis=1))[0], np.nonzero(silhouette.any(axis=0))[0]
    return ViewQuality(
        coverage=count / silhouette.size,
        visible_fraction=visible / count,
        bbox=(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1),
    )
