import warnings

import numpy as np
import pytest
import trimesh
from conftest import expected_quadrant_colour, points_settings

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.meshes import FACE, MATERIAL, NONE, TEXTURE, VERTEX, Part, load_parts
from ulip2_pipeline.stages.points.sampling import (
    _texture_lookup,
    farthest_point_order,
    normalise,
    sample_object,
    sample_surface,
)
from ulip2_pipeline.stages.points.stage import object_seed, points_for_object


def test_sphere_points_lie_on_the_unit_sphere_after_normalisation(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=3.0)
    sphere.apply_translation([5.0, -2.0, 7.0])
    path = tmp_path / "sphere.ply"
    sphere.export(path)
    cloud = points_for_object(path, "sphere", None, points_settings(), seed=0).cloud
    radii = np.linalg.norm(cloud.xyz, axis=1)
    assert cloud.xyz.shape == (10000, 3)
    assert cloud.xyz.dtype == np.float32
    assert radii.max() == pytest.approx(1.0, abs=1e-6)
    assert radii.min() > 0.995
    np.testing.assert_allclose(cloud.center, [5.0, -2.0, 7.0], atol=0.02)
    assert cloud.scale == pytest.approx(3.0, rel=0.005)


@pytest.mark.parametrize("fixture", ["textured_square_glb", "textured_square_obj"])
def test_colours_equal_the_texture_at_the_sampled_place(fixture, request):
    parts = load_parts(request.getfixturevalue(fixture), max_faces=100)
    xyz, rgb, sources, _ = sample_surface(parts, 5000, np.random.default_rng(1), (0.4, 0.4, 0.4))
    assert sources == ["texture"]
    # Stay off the quadrant borders, where nearest-texel lookup is legitimately ambiguous.
    clear = (np.abs(xyz[:, 0]) > 0.02) & (np.abs(xyz[:, 1]) > 0.02)
    np.testing.assert_array_equal(rgb[clear], expected_quadrant_colour(xyz[clear, 0], xyz[clear, 1]))
    assert len(np.unique(rgb, axis=0)) == 4


def test_vertex_material_and_default_colours(tmp_path):
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.tile([10, 200, 30, 255], (len(box.vertices), 1))
    box.export(tmp_path / "vertex.ply")
    plain = trimesh.creation.box()
    plain.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 100, 50, 255])
    )
    trimesh.Scene(plain).export(tmp_path / "material.glb")
    trimesh.creation.box().export(tmp_path / "plain.stl")
    expected = {
        "vertex.ply": ([10, 200, 30], "vertex"),
        "material.glb": ([200, 100, 50], "material"),
        "plain.stl": ([102, 102, 102], "none"),
    }
    for name, (colour, source) in expected.items():
        cloud = points_for_object(tmp_path / name, name, None, points_settings(count=500), seed=0).cloud
        assert cloud.colour_sources == [source], name
        assert (cloud.rgb == colour).all(), name


def test_node_transforms_are_applied(tmp_path):
    scene = trimesh.Scene()
    transform = trimesh.transformations.compose_matrix(
        scale=[2.0, 2.0, 2.0], translate=[10.0, 0.0, 0.0], angles=[0.0, 0.0, np.pi / 2]
    )
    scene.add_geometry(trimesh.creation.box(extents=[1.0, 0.1, 0.1]), transform=transform)
    scene.add_geometry(trimesh.creation.box(extents=[0.1, 0.1, 0.1]), transform=np.eye(4))
    path = tmp_path / "scene.glb"
    scene.export(path)
    parts = load_parts(path, max_faces=100)
    xyz, _, _, _ = sample_surface(parts, 4000, np.random.default_rng(0), (0.4, 0.4, 0.4))
    far = xyz[xyz[:, 0] > 5.0]
    # The long box is rotated 90 degrees about z, doubled and moved to x=10: long along y now.
    assert len(far) > 3000
    assert np.ptp(far[:, 1]) == pytest.approx(2.0, abs=0.02)
    assert np.ptp(far[:, 0]) == pytest.approx(0.2, abs=0.01)
    assert far[:, 0].mean() == pytest.approx(10.0, abs=0.01)


def test_area_weighting_is_uniform_over_the_surface():
    big = trimesh.creation.box(extents=[4.0, 4.0, 0.01])
    small = trimesh.creation.box(extents=[1.0, 1.0, 0.01])
    small.apply_translation([10.0, 0.0, 0.0])
    parts = load_parts_from([big, small])
    xyz, _, _, _ = sample_surface(parts, 20000, np.random.default_rng(0), (0.4, 0.4, 0.4))
    share_small = (xyz[:, 0] > 5.0).mean()
    assert share_small == pytest.approx(small.area / (big.area + small.area), abs=0.01)


def load_parts_from(meshes):
    from ulip2_pipeline.stages.points.meshes import _part_from_mesh

    return [_part_from_mesh(m, np.eye(4)) for m in meshes]


def test_every_prefix_is_a_farthest_point_sample():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(1500, 3)).astype(np.float32)
    order = farthest_point_order(xyz)
    assert sorted(order.tolist()) == list(range(len(xyz)))
    ordered = xyz[order].astype(np.float64)
    nearest = np.linalg.norm(ordered - ordered[0], axis=1)
    for k in range(1, len(ordered)):
        # The k-th point is the one farthest from the first k points (greedy FPS).
        assert nearest[k] == pytest.approx(nearest[k:].max(), rel=1e-5, abs=1e-6), k
        nearest = np.minimum(nearest, np.linalg.norm(ordered - ordered[k], axis=1))


def test_fps_prefixes_cover_the_shape_better_than_a_random_subset(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=4)
    sphere.export(tmp_path / "s.ply")
    cloud = points_for_object(tmp_path / "s.ply", "s", None, points_settings(), seed=0).cloud
    from scipy.spatial import cKDTree

    def coverage(subset):  # worst distance from any point to the subset
        return cKDTree(subset).query(cloud.xyz)[0].max()

    random = cloud.xyz[np.random.default_rng(0).permutation(10000)[:2048]]
    assert coverage(cloud.xyz[:2048]) < 0.7 * coverage(random)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(textured_square_glb):
    parts = load_parts(textured_square_glb, max_faces=100)
    a = sample_object(parts, 2000, object_seed(7, "uid"), (0.4, 0.4, 0.4))
    b = sample_object(parts, 2000, object_seed(7, "uid"), (0.4, 0.4, 0.4))
    c = sample_object(parts, 2000, object_seed(8, "uid"), (0.4, 0.4, 0.4))
    assert a.xyz.tobytes() == b.xyz.tobytes()
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.xyz.tobytes() != c.xyz.tobytes()


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("garbage.glb", b"glTF\x02\x00\x00\x00garbage", "unreadable"),
        (
            "empty.ply",
            b"ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n",
            "empty",
        ),
        ("flat.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "no_area"),
        ("nan.obj", b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "non_finite"),
    ],
)
def test_bad_meshes_raise_an_object_failure_with_a_reason(tmp_path, name, content, reason):
    # The trimesh reader alone: unreadable and empty files go on to Blender in the stage
    # (tests/test_points_isolation.py), which this process must not load.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ObjectFailure) as info:
        parts = load_parts(path, max_faces=100)
        sample_object(parts, 100, object_seed(0, "bad"), (0.4, 0.4, 0.4))
    assert info.value.reason == reason


def test_face_limit(tmp_path):
    trimesh.creation.icosphere(subdivisions=3).export(tmp_path / "s.ply")
    with pytest.raises(ObjectFailure, match="over the limit"):
        points_for_object(tmp_path / "s.ply", "s", None, points_settings(max_faces=100), seed=0)


@pytest.mark.parametrize("count", [1, 2, 5, 31, 33])
def test_small_point_counts_are_ordered_too(count):
    xyz = np.random.default_rng(0).normal(size=(count, 3)).astype(np.float32)
    order = farthest_point_order(xyz)
    assert sorted(order.tolist()) == list(range(count))
    assert order.dtype == np.int64


def two_coloured_triangles() -> list[Part]:
    """Two equal triangles far apart: the left one red per face, the right one blue per vertex."""
    left = np.array([[-3.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [-2.0, 1.5, 0.0]])
    red = np.array([[255, 0, 0, 255]], np.uint8)
    blue = np.tile(np.array([[0, 0, 255, 255]], np.uint8), (3, 1))
    faces = np.array([[0, 1, 2]])
    return [Part(left, faces, FACE, colours=red), Part(left * [-1, 1, 1], faces, VERTEX, colours=blue)]


def test_each_point_keeps_its_own_colour_through_normalisation_and_farthest_point_order():
    cloud = sample_object(two_coloured_triangles(), 600, object_seed(0, "pair"), (0.4, 0.4, 0.4))
    on_left = cloud.xyz[:, 0] < 0
    assert 200 < on_left.sum() < 400
    np.testing.assert_array_equal(cloud.rgb[on_left], np.tile([255, 0, 0], (on_left.sum(), 1)))
    np.testing.assert_array_equal(cloud.rgb[~on_left], np.tile([0, 0, 255], ((~on_left).sum(), 1)))
    assert cloud.colour_sources == [FACE, VERTEX]


def test_the_cloud_is_the_normalised_surface_sample_in_farthest_point_order():
    parts = two_coloured_triangles()
    surface = sample_surface(parts, 300, np.random.default_rng(object_seed(1, "pair")), (0.4, 0.4, 0.4))
    cloud = sample_object(parts, 300, object_seed(1, "pair"), (0.4, 0.4, 0.4))
    normalised = ((surface.xyz - surface.centroid) / cloud.scale).astype(np.float32)
    order = farthest_point_order(normalised)
    np.testing.assert_array_equal(cloud.xyz, normalised[order])
    np.testing.assert_array_equal(cloud.rgb, surface.rgb[order])
    np.testing.assert_allclose(cloud.center, surface.centroid)
    assert np.linalg.norm(cloud.xyz, axis=1).max() == pytest.approx(1.0, abs=1e-6)


# 2 rows x 4 columns of distinct texels: the value of row r, column c is 10 * r + c.
GRID_TEXTURE = (10 * np.arange(2)[:, None] + np.arange(4)[None, :]).astype(np.uint8)


@pytest.mark.parametrize(
    "u,v,row,column",
    [
        (0.1, 0.9, 0, 0),  # v up: the top row holds v in (0.5, 1)
        (0.9, 0.1, 1, 3),
        (0.3, 0.6, 0, 1),
        (1.3, 0.6, 0, 1),  # REPEAT: whole periods drop out, both ways
        (-0.7, -0.4, 0, 1),
        (2.6, 1.1, 1, 2),
        (0.0, 0.0, 1, 0),  # v = 0 is the bottom edge of the bottom row
        (1.0, 1.0, 1, 0),  # one full period from (0, 0)
        (-1e-20, 0.7, 0, 3),  # just left of u = 0 wraps to the last column
    ],
)
def test_texture_lookup_takes_the_nearest_texel_with_repeat_wrapping(u, v, row, column):
    texel = _texture_lookup(GRID_TEXTURE, np.array([[u, v]]))
    assert texel.tolist() == [GRID_TEXTURE[row, column]]


class QueuedRandom:
    """A stand-in for np.random.Generator whose random(n) calls return the given arrays in turn."""

    def __init__(self, *draws):
        self.draws = [np.asarray(d, dtype=np.float64) for d in draws]

    def random(self, count):
        draw = self.draws.pop(0)
        assert len(draw) == count
        return draw.copy()


RIGHT_TRIANGLE = Part(
    np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    np.array([[0, 1, 2]]),
    VERTEX,
    colours=np.array([[0, 0, 0, 255], [255, 0, 0, 255], [0, 255, 0, 255]], np.uint8),
)


def test_uniform_pairs_inside_the_triangle_stay_and_pairs_outside_are_reflected():
    rng = QueuedRandom([0.1, 0.5, 0.9], [0.25, 0.6, 0.25], [0.5, 0.7, 0.75])
    surface = sample_surface([RIGHT_TRIANGLE], 3, rng, (0.4, 0.4, 0.4))
    # (u, v) -> a + u (b - a) + v (c - a); (0.25, 0.75) lies on the edge u + v = 1 and is not reflected.
    np.testing.assert_allclose(surface.xyz, [[0.25, 0.5, 0.0], [0.4, 0.3, 0.0], [0.25, 0.75, 0.0]], atol=1e-15)


def test_vertex_colours_are_interpolated_at_the_sampled_place():
    surface = sample_surface([RIGHT_TRIANGLE], 500, np.random.default_rng(0), (0.4, 0.4, 0.4))
    expected = np.rint(np.stack([surface.xyz[:, 0], surface.xyz[:, 1], 0 * surface.xyz[:, 0]], axis=1) * 255)
    np.testing.assert_array_equal(surface.rgb, expected.astype(np.uint8))


def test_face_colours_keep_their_byte_values():
    colours = np.array([[10, 128, 200, 255]], np.uint8)
    part = Part(RIGHT_TRIANGLE.vertices, RIGHT_TRIANGLE.faces, FACE, colours=colours)
    surface = sample_surface([part], 50, np.random.default_rng(0), (0.4, 0.4, 0.4))
    assert surface.rgb.dtype == np.uint8
    np.testing.assert_array_equal(surface.rgb, np.tile([10, 128, 200], (50, 1)))
    assert surface.colour_sources == [FACE]


def test_a_material_colour_and_the_default_colour_become_bytes():
    material = Part(RIGHT_TRIANGLE.vertices, RIGHT_TRIANGLE.faces, MATERIAL, colours=np.array([0.2, 0.5, 1.0, 1.0]))
    plain = Part(RIGHT_TRIANGLE.vertices + [5.0, 0.0, 0.0], RIGHT_TRIANGLE.faces, NONE)
    surface = sample_surface([material, plain], 200, np.random.default_rng(0), (0.1, 0.3, 0.7))
    on_plain = surface.xyz[:, 0] > 2.0
    assert 0 < on_plain.sum() < 200
    np.testing.assert_array_equal(surface.rgb[~on_plain], np.tile([51, 128, 255], ((~on_plain).sum(), 1)))
    np.testing.assert_array_equal(surface.rgb[on_plain], np.tile([26, 76, 178], (on_plain.sum(), 1)))
    assert surface.colour_sources == [MATERIAL, NONE]


def test_texels_are_multiplied_by_the_base_colour_factor():
    square = Part(
        np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
        np.array([[0, 1, 2], [0, 2, 3]]),
        TEXTURE,
        uv=np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
        image=np.full((4, 4, 4), 200, np.uint8),
        factor=np.array([1.0, 0.5, 0.25, 1.0]),
    )
    surface = sample_surface([square], 100, np.random.default_rng(0), (0.4, 0.4, 0.4))
    np.testing.assert_array_equal(surface.rgb, np.tile([200, 100, 50], (100, 1)))
    assert surface.colour_sources == [TEXTURE]


def test_the_centroid_is_the_exact_area_weighted_centroid_of_all_parts():
    big = Part(np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), np.array([[0, 1, 2]]), NONE)  # area 2
    small = Part(np.array([[9.0, 0.0, 3.0], [10.0, 0.0, 3.0], [9.0, 1.0, 3.0]]), np.array([[0, 1, 2]]), NONE)
    surface = sample_surface([big, small], 10, np.random.default_rng(0), (0.4, 0.4, 0.4))
    big_centre, small_centre = np.array([2 / 3, 2 / 3, 0.0]), np.array([28 / 3, 1 / 3, 3.0])
    np.testing.assert_allclose(surface.centroid, (2.0 * big_centre + 0.5 * small_centre) / 2.5, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("scale", [0.0, 1e200, np.nan])
def test_a_surface_without_finite_positive_area_is_a_no_area_failure(scale):
    """All triangles degenerate (area 0), or areas that overflow to infinity or are NaN."""
    triangle = Part(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * scale, np.array([[0, 1, 2]]), NONE)
    with pytest.raises(ObjectFailure) as info:
        sample_surface([triangle], 10, np.random.default_rng(0), (0.4, 0.4, 0.4))
    assert info.value.reason == "no_area"
    assert "degenerate" in info.value.detail


@pytest.mark.parametrize("points", [np.ones((5, 3)), np.full((5, 3), np.nan)])
def test_normalising_points_without_extent_is_a_no_area_failure(points):
    with pytest.raises(ObjectFailure) as info:
        normalise(points, np.ones(3))
    assert info.value.reason == "no_area"
    assert info.value.detail == "all sampled points coincide; the object has no extent"


def test_normalise_returns_float32_points_in_the_unit_ball_with_the_centre_and_scale():
    points = np.array([[1.0, 2.0, 3.0], [4.0, 6.0, 3.0], [1.0, 2.0, 5.0]])
    xyz, center, scale = normalise(points, np.array([1.0, 2.0, 3.0]))
    assert xyz.dtype == np.float32
    assert scale == 5.0
    np.testing.assert_array_equal(center, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(xyz, [[0, 0, 0], [0.6, 0.8, 0], [0, 0, 0.4]], rtol=1e-7)


def triangle_row(x_offset: float, colour: list[int]) -> Part:
    """A FACE part: a zero-area triangle, then the right triangle moved by ``x_offset``, in ``colour``."""
    vertices = np.concatenate([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], RIGHT_TRIANGLE.vertices])
    return Part(
        vertices + [x_offset, 0.0, 0.0],
        np.array([[0, 1, 2], [3, 4, 5]]),
        FACE,
        colours=np.array([[255, 255, 255, 255], colour + [255]], np.uint8),
    )


def test_zero_area_faces_are_never_sampled_even_by_a_zero_draw():
    rng = QueuedRandom([0.0, 0.0], [0.25, 0.5], [0.25, 0.25])
    surface = sample_surface([triangle_row(0.0, [0, 0, 200])], 2, rng, (0.4, 0.4, 0.4))
    np.testing.assert_allclose(surface.xyz, [[0.25, 0.25, 0.0], [0.5, 0.25, 0.0]])
    np.testing.assert_array_equal(surface.rgb, [[0, 0, 200], [0, 0, 200]])


def test_parts_without_samples_are_skipped_and_add_no_colour_source():
    colours = [[200, 0, 0], [0, 200, 0], [0, 0, 200]]
    first, unsampled, last = (triangle_row(10.0 * k, colour) for k, colour in enumerate(colours))
    unsampled.colour_source = VERTEX
    unsampled.colours = np.zeros((6, 4), np.uint8)
    rng = QueuedRandom([0.1, 0.9, 0.95], [0.25, 0.25, 0.5], [0.25, 0.5, 0.25])  # the draws pick first, last, last
    surface = sample_surface([first, unsampled, last], 3, rng, (0.4, 0.4, 0.4))
    np.testing.assert_allclose(surface.xyz, [[0.25, 0.25, 0.0], [20.25, 0.5, 0.0], [20.5, 0.25, 0.0]])
    np.testing.assert_array_equal(surface.rgb, [[200, 0, 0], [0, 0, 200], [0, 0, 200]])
    assert surface.colour_sources == [FACE]


def test_sampling_a_textured_mesh_raises_no_warnings(textured_square_glb):
    parts = load_parts(textured_square_glb, max_faces=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_object(parts + two_coloured_triangles(), 200, object_seed(0, "quiet"), (0.4, 0.4, 0.4))


def test_colours_beyond_0_to_1_are_clipped_to_bytes():
    """Blender can give a texture factor over 1 (an HDR colour constant) or, set from Python, below 0."""
    square = Part(
        np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
        np.array([[0, 1, 2], [0, 2, 3]]),
        TEXTURE,
        uv=np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
        image=np.full((4, 4, 4), 200, np.uint8),
        factor=np.array([2.0, -0.5, 1.0, 1.0]),
    )
    surface = sample_surface([square], 20, np.random.default_rng(0), (0.4, 0.4, 0.4))
    np.testing.assert_array_equal(surface.rgb, np.tile([255, 0, 200], (20, 1)))
