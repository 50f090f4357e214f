"""Reading meshes as world-space parts: which colour source each part gets, its colours, and the failure reasons."""

import numpy as np
import pytest
import trimesh
from conftest import textured_square
from PIL import Image

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.meshes import (
    FACE,
    MATERIAL,
    NONE,
    TEXTURE,
    VERTEX,
    Part,
    _material_image_and_colour,
    _part_from_mesh,
    _rgba,
    check_parts,
    load_parts,
)


def only_part(path) -> Part:
    parts = load_parts(path, max_faces=1000)
    assert len(parts) == 1
    return parts[0]


@pytest.mark.parametrize(
    "value,expected",
    [
        ([200, 100, 50, 128], [200 / 255, 100 / 255, 50 / 255, 128 / 255]),
        ([200, 100, 50], [200 / 255, 100 / 255, 50 / 255, 1.0]),
        ([0.8, 0.4, 0.2], [0.8, 0.4, 0.2, 1.0]),
        ([1.0, 0.5, 0.2], [1.0, 0.5, 0.2, 1.0]),
        ([0.5, 0.25, 1.0, 0.5], [0.5, 0.25, 1.0, 0.5]),
        (np.array([[2, 0, 0, 255]], np.uint8), [2 / 255, 0.0, 0.0, 1.0]),
        (np.zeros(4, np.uint8), [0.0, 0.0, 0.0, 0.0]),
        ([2, 1, 0], [2 / 255, 1 / 255, 0.0, 1.0]),
        ([2, 1, 0, 2], [2 / 255, 1 / 255, 0.0, 2 / 255]),
    ],
)
def test_material_colours_become_rgba_in_0_to_1(value, expected):
    """0..255 and 0..1 colours, with or without alpha; a missing alpha is opaque."""
    rgba = _rgba(value)
    assert rgba.shape == (4,)
    assert rgba.dtype == np.float64
    np.testing.assert_allclose(rgba, expected, rtol=1e-12)


def test_no_material_colour_stays_none():
    assert _rgba(None) is None


def test_pbr_and_simple_materials_give_their_image_and_base_colour():
    image = Image.new("RGB", (2, 2))
    pbr = trimesh.visual.material.PBRMaterial(baseColorTexture=image, baseColorFactor=[255, 51, 0, 255])
    simple = trimesh.visual.material.SimpleMaterial(image=image, diffuse=[0, 102, 255, 255])
    for material, colour in [(pbr, [1.0, 0.2, 0.0, 1.0]), (simple, [0.0, 0.4, 1.0, 1.0])]:
        found_image, found_colour = _material_image_and_colour(material)
        assert found_image is image, type(material).__name__
        np.testing.assert_allclose(found_colour, colour, err_msg=type(material).__name__)


def test_another_kind_of_material_gives_neither_image_nor_colour():
    assert _material_image_and_colour(trimesh.visual.material.MultiMaterial()) == (None, None)


def test_a_texture_keeps_its_uv_image_and_base_colour_factor(tmp_path):
    square = textured_square()
    square.visual.material.baseColorFactor = [255, 51, 0, 255]
    path = tmp_path / "square.glb"
    path.write_bytes(square.export(file_type="glb"))
    part = only_part(path)
    assert part.colour_source == TEXTURE
    assert part.image.shape == (16, 16, 4)
    assert part.image.dtype == np.uint8
    np.testing.assert_array_equal(part.image[0, 0], [255, 0, 0, 255])
    np.testing.assert_allclose(part.factor, [1.0, 0.2, 0.0, 1.0])
    np.testing.assert_allclose(part.uv, (part.vertices[:, :2] + 1.0) / 2.0)


def test_a_texture_without_a_factor_is_multiplied_by_one(textured_square_glb):
    factor = only_part(textured_square_glb).factor
    assert factor.shape == (4,)
    assert factor.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_a_textured_material_without_uv_falls_back_to_its_base_colour():
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.new("RGB", (2, 2)), baseColorFactor=[255, 51, 0, 255]
    )
    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(material=material)
    part = _part_from_mesh(box, np.eye(4))
    assert part.colour_source == MATERIAL
    np.testing.assert_allclose(part.colours, [1.0, 0.2, 0.0, 1.0])


def test_uv_for_another_vertex_count_is_not_used_as_a_texture():
    square = textured_square()
    visual = square.visual.copy()
    visual.material.baseColorFactor = [255, 51, 0, 255]
    visual.uv = visual.uv[:3]
    mesh = trimesh.Trimesh(square.vertices, square.faces, visual=visual, process=False)
    assert len(mesh.visual.uv) != len(mesh.vertices)
    assert _part_from_mesh(mesh, np.eye(4)).colour_source == MATERIAL


def test_gltf_vertex_colours_win_over_the_material_colour(tmp_path):
    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 100, 50, 255])
    )
    colours = np.tile(np.array([[1, 2, 3, 255]], np.uint8), (len(box.vertices), 1))
    colours[0] = [40, 50, 60, 70]
    box.visual.vertex_attributes["color"] = colours
    trimesh.Scene(box).export(tmp_path / "box.glb")
    part = only_part(tmp_path / "box.glb")
    assert part.colour_source == VERTEX
    assert part.colours.dtype == np.uint8
    assert sorted(map(tuple, part.colours.tolist())) == sorted(map(tuple, colours.tolist()))


def test_vertex_colours_for_another_vertex_count_are_not_used():
    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 100, 50, 255])
    )
    box.visual.vertex_attributes["color"] = np.zeros((len(box.vertices) - 1, 4), np.uint8)
    part = _part_from_mesh(box, np.eye(4))
    assert part.colour_source == MATERIAL


def test_a_material_without_texture_or_vertex_colours_gives_its_colour(tmp_path):
    (tmp_path / "box.mtl").write_text("newmtl flat\nKd 0.2 0.4 1.0\n")
    (tmp_path / "box.obj").write_text("mtllib box.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl flat\nf 1 2 3\n")
    part = only_part(tmp_path / "box.obj")
    assert part.colour_source == MATERIAL
    np.testing.assert_allclose(part.colours, [0.2, 0.4, 1.0, 1.0])


@pytest.mark.parametrize("kind,source", [("face", FACE), ("vertex", VERTEX)])
def test_ply_face_and_vertex_colours_keep_their_kind_and_bytes(tmp_path, kind, source):
    box = trimesh.creation.box()
    count = len(box.faces) if kind == "face" else len(box.vertices)
    colours = np.tile(np.array([[10, 20, 30, 255]], np.uint8), (count, 1))
    colours[3] = [200, 100, 50, 128]
    setattr(box.visual, f"{kind}_colors", colours)
    box.export(tmp_path / "box.ply")
    part = only_part(tmp_path / "box.ply")
    assert part.colour_source == source
    assert part.colours.dtype == np.uint8
    np.testing.assert_array_equal(part.colours, colours)


def test_an_uncoloured_mesh_has_no_colour_source(tmp_path):
    trimesh.creation.box().export(tmp_path / "box.stl")
    part = only_part(tmp_path / "box.stl")
    assert part.colour_source == NONE
    assert part.colours is None


def test_parts_are_float64_world_space_vertices_and_int64_faces(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    scene.export(tmp_path / "scene.glb")
    part = only_part(tmp_path / "scene.glb")
    assert part.vertices.dtype == np.float64
    assert part.faces.dtype == np.int64
    np.testing.assert_allclose(part.vertices.mean(axis=0), [5, 0, 0])


def test_an_unreadable_file_names_the_loader_error(tmp_path, monkeypatch):
    def refuse(path, **kwargs):
        raise KeyError("accessors")

    monkeypatch.setattr(trimesh, "load_scene", refuse)
    with pytest.raises(ObjectFailure) as info:
        load_parts(tmp_path / "any.glb", max_faces=100)
    assert info.value.reason == "unreadable"
    assert info.value.detail == "KeyError: 'accessors'"


def test_a_garbage_file_is_unreadable(tmp_path):
    path = tmp_path / "garbage.glb"
    path.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(ObjectFailure) as info:
        load_parts(path, max_faces=100)
    assert info.value.reason == "unreadable"


def test_a_scene_without_triangles_names_what_it_found(tmp_path):
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(tmp_path / "cloud.ply")
    with pytest.raises(ObjectFailure) as info:
        load_parts(tmp_path / "cloud.ply", max_faces=100)
    assert info.value.reason == "empty"
    assert "found: PointCloud" in info.value.detail


def test_meshes_without_faces_are_skipped_and_every_kind_found_is_named(monkeypatch):
    scene = trimesh.Scene(
        [trimesh.Trimesh(vertices=np.eye(3), faces=np.zeros((0, 3), np.int64)), trimesh.PointCloud(np.eye(3))]
    )
    monkeypatch.setattr(trimesh, "load_scene", lambda path, **kwargs: scene)
    with pytest.raises(ObjectFailure) as info:
        load_parts("scene.glb", max_faces=100)
    assert info.value.reason == "empty"
    assert "(found: PointCloud, Trimesh)" in info.value.detail


def test_an_empty_scene_says_it_found_nothing(tmp_path):
    path = tmp_path / "empty.ply"
    path.write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with pytest.raises(ObjectFailure) as info:
        load_parts(path, max_faces=100)
    assert info.value.reason == "empty"
    assert "found: nothing" in info.value.detail


def triangle_part(vertices) -> Part:
    return Part(np.asarray(vertices, dtype=np.float64), np.array([[0, 1, 2]]), NONE)


def test_the_face_limit_counts_every_part_and_allows_exactly_the_limit():
    parts = [triangle_part([[0, 0, 0], [1, 0, 0], [0, 1, 0]])] * 3
    assert check_parts(parts, max_faces=3) is parts
    with pytest.raises(ObjectFailure) as info:
        check_parts(parts, max_faces=2)
    assert info.value.reason == "too_many_faces"
    assert info.value.detail == "3 triangles, over the limit of 2"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vertices_are_counted(bad):
    good = triangle_part([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    broken = triangle_part([[bad, 0, 0], [1, bad, bad], [0, 1, 0]])
    with pytest.raises(ObjectFailure) as info:
        check_parts([good, broken], max_faces=10)
    assert info.value.reason == "non_finite"
    assert info.value.detail.startswith("2 vertices")


def gltf_triangle_with_material_and_vertex_colours(colours: np.ndarray, component_type: int) -> bytes:
    """A one-triangle GLB whose primitive has a material and a COLOR_0 accessor of ``component_type``."""
    import json
    import struct

    indices = np.arange(3, dtype=np.uint16).tobytes() + b"\0\0"
    blobs = [np.eye(3, dtype=np.float32).tobytes(), colours.tobytes(), indices]
    offsets = np.cumsum([0] + [len(blob) for blob in blobs]).tolist()
    gltf = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2, "material": 0}]}],
        "buffers": [{"byteLength": offsets[-1]}],
        "bufferViews": [{"buffer": 0, "byteOffset": offsets[i], "byteLength": len(blobs[i])} for i in range(3)],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 1]},
            {
                "bufferView": 1,
                "componentType": component_type,
                "count": 3,
                "type": f"VEC{colours.shape[1]}",
                "normalized": component_type != 5126,
            },
            {"bufferView": 2, "componentType": 5123, "count": 3, "type": "SCALAR"},
        ],
    }
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(blobs)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_gltf_float_vertex_colours_beside_a_material_are_bytes(tmp_path):
    """Part's contract: VERTEX colours are uint8, whatever type the file stores them in."""
    path = tmp_path / "triangle.glb"
    colours = np.tile(np.array([[0.2, 0.6, 1.0, 1.0]], np.float32), (3, 1))
    path.write_bytes(gltf_triangle_with_material_and_vertex_colours(colours, 5126))
    part = only_part(path)
    assert part.colour_source == VERTEX
    assert part.colours.dtype == np.uint8


@pytest.mark.parametrize(
    "colours,component_type",
    [
        (np.tile(np.array([[0.2, 0.6, 1.0, 1.0]], np.float32), (3, 1)), 5126),
        (np.tile(np.array([[0.5, 0.6, 1.0, 1.0]]) * 65535, (3, 1)).round().astype(np.uint16), 5123),
    ],
)
def test_gltf_float_and_short_vertex_colours_beside_a_material_are_scaled_to_bytes(tmp_path, colours, component_type):
    """trimesh keeps such a COLOR_0 raw; a cast to bytes made FLOAT colours 0 or 1 and kept a short's low byte."""
    path = tmp_path / "triangle.glb"
    path.write_bytes(gltf_triangle_with_material_and_vertex_colours(colours, component_type))
    part = only_part(path)
    assert part.colour_source == VERTEX
    np.testing.assert_array_equal(part.colours[0], np.rint(colours[0] / colours.max() * 255))


def test_gltf_rgb_vertex_colours_beside_a_material_can_be_sampled(tmp_path):
    from ulip2_pipeline.stages.points.sampling import sample_surface

    path = tmp_path / "triangle.glb"
    path.write_bytes(gltf_triangle_with_material_and_vertex_colours(np.full((3, 3), 200, np.uint8), 5121))
    surface = sample_surface(load_parts(path, max_faces=10), 5, np.random.default_rng(0), (0.4, 0.4, 0.4))
    np.testing.assert_array_equal(surface.rgb, np.full((5, 3), 200))


@pytest.mark.parametrize(
    "values,expected",
    [
        (np.array([[-0.2, 0.0, 1.5, 0.5]], np.float32), [0, 0, 255, 128]),  # floats: scaled, clipped
        (np.array([[0, 257, 65535, 32768]], np.uint16), [0, 1, 255, 128]),  # normalised shorts
        (np.array([[0, 7, 255]], np.uint8), [0, 7, 255, 255]),  # RGB bytes: opaque alpha
        (np.array([[0.2, 0.6, 1.0]], np.float64), [51, 153, 255, 255]),  # RGB floats: opaque alpha
    ],
)
def test_accessor_colours_become_rgba_bytes(values, expected):
    from ulip2_pipeline.stages.points.meshes import _accessor_colour_bytes

    colours = _accessor_colour_bytes(values)
    assert colours.dtype == np.uint8
    np.testing.assert_array_equal(colours, [expected])
