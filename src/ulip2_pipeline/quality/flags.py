"""Quality flags of one object and its views, from what the stages recorded (README "Quality flags").

View flags: ``blank_view`` and ``low_contrast`` from the render's visible fraction, and the
kept caption's flags (``quality.captions``). Object flags: every flag one of its views has,
``tiny_object`` from the median view's coverage, ``outlier_geometry`` from its points and
``missing_texture`` from the render.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ulip2_pipeline.quality.captions import caption_flags
from ulip2_pipeline.quality.geometry import outlier_geometry
from ulip2_pipeline.settings import QualitySettings

VIEW_FLAGS = ("blank_view", "low_contrast", "empty_caption", "repetitive_caption", "degenerate_caption")
OBJECT_FLAGS = ("tiny_object", "outlier_geometry", "missing_texture") + VIEW_FLAGS
RECORDED_EARLIER = frozenset({"missing_texture"})  # the render ledger has its row already


def view_flags(visible_fraction: float | None, kept_caption: str | None, settings: QualitySettings) -> list[str]:
    """The flags of one view: its picture's (None: a render from before the measure existed) and its caption's."""
    flags = []
    if visible_fraction is not None:
        if visible_fraction < settings.blank_below:
            flags.append("blank_view")
        if visible_fraction < settings.low_contrast_below:
            flags.append("low_contrast")
    if kept_caption is not None:
        flags += caption_flags(kept_caption)
    return flags


@dataclass(frozen=True)
class ObjectQuality:
    flags: list[str]  # in OBJECT_FLAGS order
    details: dict[str, str]  # flag -> what was measured, for the ledger


def object_quality(
    per_view_flags: list[list[str]],
    coverages: list[float | None],
    xyz: np.ndarray,
    settings: QualitySettings,
    missing_textures: int = 0,
) -> ObjectQuality:
    details = {}
    if missing_textures:
        details["missing_texture"] = f"{missing_textures} texture file(s) missing, rendered with the fallback colour"
    measured = [c for c in coverages if c is not None]
    if measured and float(np.median(measured)) < settings.tiny_coverage:
        details["tiny_object"] = (
            f"the median view's silhouette covers {np.median(measured):.2%} of the image "
            f"(under {settings.tiny_coverage:.2%})"
        )
    outliers = outlier_geometry(xyz, max_fraction=settings.outlier_max_fraction, min_spread=settings.outlier_min_spread)
    if outliers.flagged:
        details["outlier_geometry"] = (
            f"{outliers.outlier_fraction:.2%} of the points lie apart from the rest, the farthest "
            f"{outliers.spread:.1f} times the core's radius from its centre"
        )
    for flag in VIEW_FLAGS:
        views = [i for i, flags in enumerate(per_view_flags) if flag in flags]
        if views:
            details[flag] = f"views {views} of {len(per_view_flags)}"
    return ObjectQuality([f for f in OBJECT_FLAGS if f in details], details)
