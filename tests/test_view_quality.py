"""The per-view quality measure: silhouette from alpha, visible where it differs from white by more than 12/255."""

import numpy as np
import pytest

from ulip2_pipeline.quality.views import VISIBLE_DELTA, view_quality


def canvas(size=20):
    return np.zeros((size, size, 4), np.uint8)


def paint(image, rgb, alpha=255, rows=slice(5, 15), cols=slice(4, 10)):
    image[rows, cols, :3] = rgb
    image[rows, cols, 3] = alpha
    return image


def test_an_object_drawn_in_the_backgrounds_white_is_covered_but_not_visible():
    quality = view_quality(paint(canvas(), 255))
    assert quality.coverage == pytest.approx(60 / 400)
    assert quality.visible_fraction == 0.0


def test_the_threshold_is_more_than_twelve_levels_in_any_channel():
    assert view_quality(paint(canvas(), 255 - VISIBLE_DELTA)).visible_fraction == 0.0
    assert view_quality(paint(canvas(), 255 - VISIBLE_DELTA - 1)).visible_fraction == 1.0
    assert view_quality(paint(canvas(), (255, 255, 200))).visible_fraction == 1.0  # blue channel alone


def test_the_visible_fraction_is_the_share_of_the_silhouette():
    image = paint(canvas(), 250)
    paint(image, 40, cols=slice(4, 7))  # half of the object is dark
    assert view_quality(image).visible_fraction == pytest.approx(0.5)


def test_alpha_below_one_half_is_background_and_colour_is_composited_over_white():
    image = paint(canvas(), 0, alpha=127)
    assert view_quality(image).coverage == 0.0
    image = paint(canvas(), 0, alpha=128)  # black at half alpha composites to mid grey: visible
    assert view_quality(image).visible_fraction == 1.0
    image = paint(canvas(), 200, alpha=200)  # 200 * 0.78 + 255 * 0.22: 212, visible
    assert view_quality(image).visible_fraction == 1.0
    image = paint(canvas(), 255, alpha=200)  # white over white stays white, whatever the alpha
    assert view_quality(image).visible_fraction == 0.0


def test_the_bounding_box_is_x0_y0_x1_y1_end_exclusive():
    assert view_quality(paint(canvas(), 0)).bbox == (4, 5, 10, 15)


def test_an_empty_view_has_no_coverage_no_visible_part_and_no_box():
    quality = view_quality(canvas())
    assert (quality.coverage, quality.visible_fraction, quality.bbox) == (0.0, 0.0, None)


def test_an_image_without_alpha_is_refused():
    with pytest.raises(ValueError, match="RGBA"):
        view_quality(np.zeros((4, 4, 3), np.uint8))


def test_an_opaque_pixel_composites_to_its_own_colour_exactly():
    from ulip2_pipeline.quality.views import composite

    image = paint(canvas(), (200, 100, 7))
    assert composite(image)[7, 5].tolist() == [200.0, 100.0, 7.0]
    assert composite(image)[0, 0].tolist() == [255.0, 255.0, 255.0]


def test_visibility_is_measured_against_the_background_given():
    grey = (128, 128, 128)
    assert view_quality(paint(canvas(), 128), background=grey).visible_fraction == 0.0
    assert view_quality(paint(canvas(), 255), background=grey).visible_fraction == 1.0
