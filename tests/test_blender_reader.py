"""Points from the scene Blender imports: Blender-only formats and Draco glTF get points with the
right colours, in the frame the render stage uses (they project onto the object's pixels)."""

import json
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh
from conftest import expected_quadrant_colour, textured_square
from projection import assert_points_on_silhouette, run_bpy
from test_render_stage import DATASET, render

from ulip2_pipeline.stages.points.stage import read_points

pytestmark = pytest.mark.render

CLAY = (200, 100, 50)  # sRGB of the fbx's material

BLENDER_FILES = textwrap.dedent("""
    import bpy, sys
    out, square_glb, scene_glb = sys.argv[-3:]

    def fresh():
        bpy.ops.wm.read_factory_settings(use_empty=True)

    def srgb_to_linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    for source, target in ((square_glb, "square_draco.glb"), (scene_glb, "scene_draco.glb")):
        fresh()
        bpy.ops.import_scene.gltf(filepath=source)
        bpy.ops.export_scene.gltf(filepath=f"{out}/{target}", export_draco_mesh_compression_enable=True)

    fresh()  # a monkey with a plain material colour, moved and turned by its object transform
    bpy.ops.mesh.primitive_monkey_add(location=(0.5, -0.3, 0.2), rotation=(0.3, 0.2, 0.1))
    monkey = bpy.context.active_object
    clay = bpy.data.materials.new("clay")
    shader = next(n for n in clay.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    shader.inputs["Base Color"].default_value = (*[srgb_to_linear(c / 255) for c in (200, 100, 50)], 1.0)
    monkey.data.materials.append(clay)
    bpy.ops.export_scene.fbx(filepath=f"{out}/monkey.fbx")

    fresh()  # a cube painted per vertex: red on top (Blender's +z), blue below
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    cube = bpy.context.active_object
    paint = cube.data.color_attributes.new("paint", "BYTE_COLOR", "POINT")
    for vertex, value in zip(cube.data.vertices, paint.data):
        value.color_srgb = (1.0, 0.0, 0.0, 1.0) if vertex.co.z > 0 else (0.0, 0.0, 1.0, 1.0)
    bpy.ops.wm.usd_export(filepath=f"{out}/cube.usdc")
""")


@pytest.fixture(scope="module")
def blender_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blender_files")
    (tmp / "square.glb").write_bytes(textured_square().export(file_type="glb"))
    scene = trimesh.Scene()
    scene.add_geometry(textured_square(), transform=trimesh.transformations.rotation_matrix(0.4, [0, 1, 0]))
    box = trimesh.creation.box(extents=[0.5, 1.5, 0.3])
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([0.8, 0.2, 0.1]))
    (tmp / "scene.glb").write_bytes(scene.export(file_type="glb"))
    run_bpy(BLENDER_FILES, str(tmp), str(tmp / "square.glb"), str(tmp / "scene.glb"))
    for name in ("square_draco.glb", "scene_draco.glb"):
        assert b"KHR_draco_mesh_compression" in (tmp / name).read_bytes()
    return tmp


def world(points_table, uid):
    """A points row's samples back in file coordinates, with its colours and metadata."""
    row = next(r for r in points_table if r["uid"] == uid)
    xyz = np.array(row["xyz"], dtype=np.float64) * row["scale"] + np.array(row["center"])
    return xyz, np.array(row["rgb"]), row


def test_blender_only_files_get_points_with_their_colours_in_the_render_frame(tmp_path, blender_files):
    files = {
        name: blender_files / f"{name}.{ext}"
        for name, ext in (
            ("square_draco", "glb"),
            ("square_plain", "glb"),
            ("scene_draco", "glb"),
            ("monkey", "fbx"),
            ("cube", "usdc"),
        )
    }
    files["square_plain"] = blender_files / "square.glb"
    rows, failures, _ = render(tmp_path, files, views=3, depth=False)
    assert failures == {}
    points = pq.read_table(tmp_path / "points.parquet").to_pylist()
    readers = {r["uid"]: r["reader"] for r in points}
    assert readers == {
        "square_draco": "blender",
        "square_plain": "trimesh",
        "scene_draco": "blender",
        "monkey": "blender",
        "cube": "blender",
    }

    # Draco square: the texture at each point's UV, in the glTF file's own frame, like its plain twin via trimesh.
    xyz, rgb, draco = world(points, "square_draco")
    clear = (np.abs(xyz[:, 0]) > 0.02) & (np.abs(xyz[:, 1]) > 0.02)
    assert draco["colour_sources"] == ["texture"]
    assert np.abs(xyz[:, 2]).max() < 1e-3
    np.testing.assert_array_equal(rgb[clear], expected_quadrant_colour(xyz[clear, 0], xyz[clear, 1]))
    _, _, plain = world(points, "square_plain")
    np.testing.assert_allclose(draco["center"], plain["center"], atol=1e-3)
    assert draco["scale"] == pytest.approx(plain["scale"], abs=0.02)  # the farthest of random samples: near sqrt(2)
    assert draco["num_faces"] == plain["num_faces"] == 2

    _, rgb, monkey = world(points, "monkey")
    assert monkey["colour_sources"] == ["material"]
    assert np.abs(rgb.astype(int) - CLAY).max() <= 1

    # Cube: Blender's +z is the file frame's +y for a y-up dataset (file_to_blender), red on top.
    xyz, rgb, cube = world(points, "cube")
    assert cube["colour_sources"] == ["vertex"]
    top, bottom = xyz[:, 1] > 0.499, xyz[:, 1] < -0.499
    assert top.sum() > 500
    assert bottom.sum() > 500
    assert (rgb[top] == [255, 0, 0]).all()
    assert (rgb[bottom] == [0, 0, 255]).all()

    # The render stage took every frame from the points, and the points land on the object's pixels.
    table = read_points(tmp_path / "points.parquet")
    index = {uid: i for i, uid in enumerate(table["uid"])}
    assert {r["normalisation_source"] for r in rows} == {"points"}
    for row in rows:
        if row["uid"].startswith("square"):
            continue  # a lone flat square is seen edge-on from some views; the scene below has it turned
        assert_points_on_silhouette(table["xyz"][index[row["uid"]]], row, coverage=0.7)  # 4,000 points on ~2,000 pixels


def test_a_blender_file_and_its_points_share_the_frame_for_every_up_axis(tmp_path, blender_files):
    dataset = DATASET.replace(up_axis="z")
    rows, failures, _ = render(
        tmp_path, {"monkey": blender_files / "monkey.fbx"}, dataset=dataset, views=3, depth=False
    )
    assert failures == {}
    assert {r["normalisation_source"] for r in rows} == {"points"}
    table = read_points(tmp_path / "points.parquet")
    for row in rows:
        assert_points_on_silhouette(table["xyz"][0], row)


FLOAT_TEXTURE = textwrap.dedent("""
    import bpy, json, sys
    from pathlib import Path
    out = Path(sys.argv[-2])
    linear = json.loads(sys.argv[-1])  # rows top first, as RGBA in linear light
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    plane = bpy.context.active_object
    image = bpy.data.images.new("linear", 2, 2, float_buffer=True, alpha=True)
    image.pixels.foreach_set([v for row in reversed(linear) for pixel in row for v in pixel])  # bottom row first
    image.filepath_raw, image.file_format = str(out / "linear.exr"), "OPEN_EXR"
    image.save()
    material = bpy.data.materials.new("hdr")
    nodes = material.node_tree.nodes
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = bpy.data.images.load(str(out / "linear.exr"))
    shader = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    material.node_tree.links.new(texture.outputs["Color"], shader.inputs["Base Color"])
    plane.data.materials.append(material)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "square.blend"))
    is_float = texture.image.is_float

    from ulip2_pipeline.stages.render.blender_mesh import read_parts
    parts = read_parts(out / "square.blend", "z", 1000)
    (out / "parts.json").write_text(json.dumps({"sources": [p.colour_source for p in parts],
                                                "float": is_float,
                                                "image": parts[0].image.tolist()}))
""")


def test_a_float_texture_gives_the_points_its_srgb_colours(tmp_path):
    """EXR and HDR textures hold linear light: the points get the display colours a render shows."""
    linear = [
        [[0.21404114, 0.0, 1.0, 1.0], [0.6038273, 0.6038273, 0.6038273, 1.0]],
        [[0.0, 0.0031308, 0.05, 1.0], [1.0, 0.21404114, 0.0, 1.0]],
    ]
    run_bpy(FLOAT_TEXTURE, str(tmp_path), json.dumps(linear))
    parts = json.loads((tmp_path / "parts.json").read_text())
    assert parts["sources"] == ["texture"]
    assert parts["float"] is True
    expected = [[[128, 0, 255, 255], [204, 204, 204, 255]], [[0, 10, 63, 255], [255, 128, 0, 255]]]
    assert np.abs(np.array(parts["image"]) - np.array(expected)).max() <= 1  # EXR stores half floats
