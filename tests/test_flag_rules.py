"""The view and object flag rules themselves: thresholds are strict bounds, details say what was measured."""

import numpy as np

from ulip2_pipeline.config import default_config
from ulip2_pipeline.quality.flags import object_quality, view_flags
from ulip2_pipeline.settings import QualitySettings

SETTINGS = QualitySettings.from_config(default_config()["quality"])


def cube_with_a_speck(far: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    cube = rng.uniform(-0.5, 0.5, size=(5000, 3))
    axis = rng.integers(0, 3, 5000)
    cube[np.arange(5000), axis] = np.sign(cube[np.arange(5000), axis]) * 0.5
    speck = rng.uniform(-0.01, 0.01, size=(50, 3)) + [far, 0.0, 0.0]
    return np.concatenate([cube, speck])


def test_a_view_exactly_at_a_threshold_is_not_flagged():
    assert view_flags(SETTINGS.blank_below, "a chair", SETTINGS) == ["low_contrast"]
    assert view_flags(SETTINGS.low_contrast_below, "a chair", SETTINGS) == []
    assert view_flags(None, "a chair", SETTINGS) == []  # a render from before the measure


def test_an_object_exactly_at_the_tiny_coverage_is_not_tiny():
    cloud = cube_with_a_speck()[:5000]
    assert object_quality([[]], [SETTINGS.tiny_coverage], cloud, SETTINGS).flags == []
    assert object_quality([[]], [SETTINGS.tiny_coverage * 0.99], cloud, SETTINGS).flags == ["tiny_object"]


def test_missing_textures_flag_only_when_some_were_missing():
    cloud = cube_with_a_speck()[:5000]
    assert object_quality([[]], [0.3], cloud, SETTINGS).flags == []
    found = object_quality([[]], [0.3], cloud, SETTINGS, missing_textures=2)
    assert found.flags == ["missing_texture"]
    assert found.details["missing_texture"].startswith("2 texture file(s) missing")


def test_view_flags_name_their_views_in_the_details():
    found = object_quality(
        [["low_contrast"], [], ["low_contrast"]], [0.3, 0.3, 0.3], cube_with_a_speck()[:5000], SETTINGS
    )
    assert found.flags == ["low_contrast"]
    assert found.details["low_contrast"] == "views [0, 2] of 3"


def test_outlier_geometry_follows_the_configured_fraction_and_spread():
    cloud = cube_with_a_speck()
    found = object_quality([[]], [0.3], cloud, SETTINGS)
    assert found.flags == ["outlier_geometry"]
    assert "of the points lie apart from the rest" in found.details["outlier_geometry"]
    assert object_quality([[]], [0.3], cloud, SETTINGS.replace(outlier_min_spread=1000.0)).flags == []
    assert object_quality([[]], [0.3], cloud, SETTINGS.replace(outlier_max_fraction=0.001)).flags == []
