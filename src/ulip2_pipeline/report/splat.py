"""Draw a coloured point cloud through a recorded camera: square splats, nearest point wins.

The cameras are the render stage's own (``intrinsics``, ``world_to_camera`` of a view,
from the normalised frame), so a preview shows the points exactly where the view shows
the surface, whatever the dataset's up axis: a misaligned or mis-coloured cloud is
visible at a glance next to its view.
"""

from __future__ import annotations

import numpy as np


def project(xyz: np.ndarray, world_to_camera, intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (column, row; (0, 0) the top-left pixel's corner) and depth of every point."""
    w2c = np.asarray(world_to_camera, dtype=np.float64).reshape(4, 4)
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    cam = xyz.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = (cam @ k.T)[:, :2] / depth[:, None]
    return pixels, depth


def splat(
    xyz: np.ndarray,
    rgb: np.ndarray,
    world_to_camera,
    intrinsics,
    width: int,
    height: int,
    size: int,
    radius: int | None = None,
    shade: float = 0.2,
    background: int = 255,
) -> np.ndarray:
    """An RGB image at most ``size`` pixels on its longer side of the points seen by a ``width`` x ``height`` camera.

    Each point covers a (2 ``radius`` + 1)² square; where squares overlap, the point nearest the
    camera wins. ``shade`` darkens the farthest points by that fraction (a depth cue). The
    default radius grows with ``size``: 10,000 points leave gaps (where the far side would
    show through) between radius-1 splats once an object spans more than about 100 pixels.
    """
    if radius is None:
        radius = max(1, round(size / 64))
    scale = size / max(width, height)
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    image = np.full((out_h, out_w, 3), background, dtype=np.uint8)
    pixels, depth = project(xyz, world_to_camera, intrinsics)
    visible = (depth > 1e-6) & np.isfinite(pixels).all(axis=1)
    if not visible.any():
        return image
    pixels, depth, colours = pixels[visible] * scale, depth[visible], rgb[visible].astype(np.float32)
    near, far = depth.min(), depth.max()
    colours *= (1.0 - shade * (depth - near) / max(far - near, 1e-9))[:, None]
    centre = np.floor(pixels).astype(np.int64)
    offsets = np.arange(-radius, radius + 1)
    dx, dy = (g.reshape(-1) for g in np.meshgrid(offsets, offsets))
    cols = (centre[:, 0, None] + dx[None, :]).reshape(-1)
    rows = (centre[:, 1, None] + dy[None, :]).reshape(-1)
    point = np.repeat(np.arange(len(depth)), len(dx))
    inside = (cols >= 0) & (cols < out_w) & (rows >= 0) & (rows < out_h)
    pixel, point = rows[inside] * out_w + cols[inside], point[inside]
    order = np.lexsort((depth[point], pixel))  # by pixel, nearest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    winners = order[first]
    image.reshape(-1, 3)[pixel[winners]] = np.clip(np.rint(colours[point[winners]]), 0, 255).astype(np.uint8)
    return image
