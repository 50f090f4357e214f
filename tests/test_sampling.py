import numpy as np
import pytest
import trimesh

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.meshes import FACE, VERTEX, Part, load_parts
from ulip2_pipeline.points import object_seed, points_for_object
from ulip2_pipeline.sampling import farthest_point_order, sample_object, sample_surface

from conftest import expected_quadrant_colour, points_cfg


def test_sphere_points_lie_on_the_unit_sphere_after_normalisation(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=3.0)
    sphere.apply_translation([5.0, -2.0, 7.0])
    path = tmp_path / "sphere.ply"
    sphere.export(path)
    cloud = points_for_object(path, "sphere", None, points_cfg(), seed=0).cloud
    radii = np.linalg.norm(cloud.xyz, axis=1)
    assert cloud.xyz.shape == (10000, 3) and cloud.xyz.dtype == np.float32
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
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 100, 50, 255]))
    trimesh.Scene(plain).export(tmp_path / "material.glb")
    trimesh.creation.box().export(tmp_path / "plain.stl")
    expected = {"vertex.ply": ([10, 200, 30], "vertex"), "material.glb": ([200, 100, 50], "material"),
                "plain.stl": ([102, 102, 102], "none")}
    for name, (colour, source) in expected.items():
        cloud = points_for_object(tmp_path / name, name, None, points_cfg(count=500), seed=0).cloud
        assert cloud.colour_sources == [source], name
        assert (cloud.rgb == colour).all(), name


def test_node_transforms_are_applied(tmp_path):
    scene = trimesh.Scene()
    transform = trimesh.transformations.compose_matrix(scale=[2.0, 2.0, 2.0], translate=[10.0, 0.0, 0.0],
                                                       angles=[0.0, 0.0, np.pi / 2])
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
    from ulip2_pipeline.meshes import _part_from_mesh

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
    cloud = points_for_object(tmp_path / "s.ply", "s", None, points_cfg(), seed=0).cloud
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
    assert a.xyz.tobytes() == b.xyz.tobytes() and a.rgb.tobytes() == b.rgb.tobytes()
    assert a.xyz.tobytes() != c.xyz.tobytes()


@pytest.mark.parametrize("name,content,reason", [
    ("garbage.glb", b"glTF\x02\x00\x00\x00garbage", "unreadable"),
    ("empty.ply", b"ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n", "empty"),
    ("flat.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "no_area"),
    ("nan.obj", b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "non_finite"),
])
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
        points_for_object(tmp_path / "s.ply", "s", None, points_cfg(max_faces=100), seed=0)


@pytest.mark.parametrize("count", [1, 2, 5, 31, 33])
def test_small_point_counts_are_ordered_too(count):
    xyz = np.random.default_rng(0).normal(size=(count, 3)).astype(np.float32)
    assert sorted(farthest_point_order(xyz).tolist()) == list(range(count))


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
