"""Shared checks that an object's points land on its pixels in a rendered view, and Blender helpers."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation


def alpha(row) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["png"])).convert("RGBA"))[..., 3]


def project(xyz: np.ndarray, row) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(columns, rows, camera depth) of normalised points in a render row's view."""
    k = np.array(row["intrinsics"]).reshape(3, 3)
    w2c = np.array(row["world_to_camera"]).reshape(4, 4)
    cam = xyz.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    pix = cam @ k.T
    cols, rws = np.floor(pix[:, :2] / pix[:, 2:3]).astype(int).T
    return cols, rws, cam[:, 2]


def assert_points_on_silhouette(xyz: np.ndarray, row, coverage: float = 0.85) -> None:
    """The points fall on the object's pixels and cover most of them (the frames agree)."""
    cols, rws, _ = project(xyz, row)
    mask = alpha(row) > 0
    label = (row["uid"], row["view"])
    inside = (cols >= 0) & (cols < mask.shape[1]) & (rws >= 0) & (rws < mask.shape[0])
    assert inside.all(), label
    # Points on the rim may fall in a boundary pixel that few samples missed: allow one pixel there.
    assert binary_dilation(mask)[rws, cols].mean() > 0.999, label
    assert mask[rws, cols].mean() > 0.97, label
    covered = np.zeros_like(mask)
    covered[rws, cols] = True
    assert (covered & mask).sum() / mask.sum() > coverage, label


def run_bpy(script: str, *args: str, timeout: float = 300) -> None:
    """Run a bpy script in a fresh interpreter (Blender is never loaded into the test process)."""
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"bpy script failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
