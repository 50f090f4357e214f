"""Colour conversions shared by the readers and the renderer (pure NumPy, no Blender).

Blender keeps material colours and float image buffers in linear light; byte images
hold the file's sRGB bytes. Points store display sRGB bytes, the colours a render shows.
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(value):
    """The sRGB transfer function inverted; a float gives a float, an array an array."""
    srgb = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # the branch np.where does not pick may see negative bases
        linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return float(linear) if np.ndim(value) == 0 else linear


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear colours (RGB, clipped to 0..1; a fourth channel, alpha, passes through) to display sRGB."""
    out = np.array(linear, dtype=np.float64)
    rgb = np.clip(out[..., :3], 0.0, 1.0)
    out[..., :3] = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    return out


def image_buffer_to_srgb_bytes(
    values: np.ndarray, width: int, height: int, channels: int, is_float: bool
) -> np.ndarray:
    """A Blender image's flat pixel buffer as (H, W, 4) uint8 display sRGB, top row first.

    Blender stores the bottom row first; grey images (one or two channels) become grey RGB
    with opaque alpha; float buffers (EXR, HDR) hold linear values, byte buffers the file's sRGB.
    """
    values = np.asarray(values, dtype=np.float32).reshape(height, width, channels)[::-1]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., : min(4, channels)] = values[..., :4]
    if channels < 3:
        rgba[..., 1:3] = rgba[..., :1]
    if is_float:
        rgba = linear_to_srgb(rgba)
    return np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
