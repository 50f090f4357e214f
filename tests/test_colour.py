"""Colour conversions: the sRGB transfer function both ways, and Blender image buffers as display bytes."""

import warnings

import numpy as np
import pytest

from ulip2_pipeline.colour import image_buffer_to_srgb_bytes, linear_to_srgb, srgb_to_linear

# (sRGB, linear) pairs from the sRGB standard's formula, on both sides of the linear segment's end.
KNOWN = [
    (0.0, 0.0),
    (0.02, 0.02 / 12.92),
    (0.04045, 0.04045 / 12.92),
    (0.5, 0.21404114048223255),
    (0.8, 0.6038273388553378),
    (1.0, 1.0),
]


@pytest.mark.parametrize("srgb,linear", KNOWN)
def test_srgb_to_linear_follows_the_standard(srgb, linear):
    assert srgb_to_linear(srgb) == pytest.approx(linear, rel=1e-12, abs=1e-15)
    assert isinstance(srgb_to_linear(srgb), float)


@pytest.mark.parametrize("srgb,linear", KNOWN)
def test_linear_to_srgb_follows_the_standard(srgb, linear):
    assert linear_to_srgb(np.array([linear, linear, linear]))[0] == pytest.approx(
        srgb, abs=1e-7
    )  # the two segments meet to 1e-8


def test_the_two_directions_invert_each_other_on_arrays():
    srgb = np.linspace(0.0, 1.0, 257)
    linear = srgb_to_linear(srgb)
    assert linear.shape == srgb.shape
    assert np.all(np.diff(linear) > 0)
    np.testing.assert_allclose(linear_to_srgb(np.stack([linear] * 3, axis=1))[:, 0], srgb, atol=1e-7)


def test_linear_to_srgb_clips_colour_but_passes_alpha_through():
    out = linear_to_srgb(np.array([[1.7, -0.2, 0.0031308, 0.25]]))
    np.testing.assert_allclose(out[0], [1.0, 0.0, 12.92 * 0.0031308, 0.25])


def buffer(rows_bottom_first: list[list[list[float]]]) -> tuple[np.ndarray, int, int, int]:
    array = np.asarray(rows_bottom_first, dtype=np.float32)
    height, width, channels = array.shape
    return array.reshape(-1), width, height, channels


def test_a_float_texture_is_linear_and_becomes_srgb_bytes():
    values, width, height, channels = buffer([[[0.21404114, 1.0, 0.0, 1.0], [4.0, 0.0031308, 0.5, 0.5]]])
    pixels = image_buffer_to_srgb_bytes(values, width, height, channels, is_float=True)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (1, 2, 4)
    np.testing.assert_array_equal(pixels[0, 0], [128, 255, 0, 255])
    np.testing.assert_array_equal(pixels[0, 1], [255, 10, 188, 128])  # over-range clipped; alpha stays linear


def test_a_byte_texture_keeps_its_srgb_values():
    values, width, height, channels = buffer([[[0.5, 0.25, 1.0, 1.0]]])
    np.testing.assert_array_equal(
        image_buffer_to_srgb_bytes(values, width, height, channels, False)[0, 0], [128, 64, 255, 255]
    )


def test_rows_come_top_first_and_grey_images_become_grey_rgb():
    values, width, height, channels = buffer([[[0.0]], [[1.0]], [[0.5]]])  # bottom row black, top row mid grey
    pixels = image_buffer_to_srgb_bytes(values, width, height, channels, False)
    assert pixels.shape == (3, 1, 4)
    np.testing.assert_array_equal(pixels[:, 0], [[128, 128, 128, 255], [255, 255, 255, 255], [0, 0, 0, 255]])


def test_three_channel_images_are_opaque():
    values, width, height, channels = buffer([[[0.2, 0.4, 0.6]]])
    np.testing.assert_array_equal(
        image_buffer_to_srgb_bytes(values, width, height, channels, False)[0, 0], [51, 102, 153, 255]
    )


def test_float32_colours_are_converted_in_float64_both_ways():
    colours = np.array([[0.5, 0.2, 0.9]], dtype=np.float32)
    assert srgb_to_linear(colours).dtype == np.float64
    assert linear_to_srgb(colours).dtype == np.float64


def test_out_of_range_alpha_in_a_float_buffer_is_clipped_to_bytes():
    values, width, height, channels = buffer([[[0.0, 0.0, 0.0, 1.5], [1.0, 1.0, 1.0, -0.5]]])
    pixels = image_buffer_to_srgb_bytes(values, width, height, channels, is_float=True)
    np.testing.assert_array_equal(pixels[0, :, 3], [255, 0])


def test_negative_srgb_values_continue_the_linear_segment_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        linear = srgb_to_linear(np.array([-0.5, -0.01, 0.5]))
    np.testing.assert_allclose(linear[:2], [-0.5 / 12.92, -0.01 / 12.92])
