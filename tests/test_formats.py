"""Every extension the folder source takes by default goes end to end through points and render,
and so do real third-party files (pybullet_data: an OBJ with MTL and texture, STL, COLLADA)."""

import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh
import yaml
from conftest import REPO
from projection import assert_points_on_silhouette, run_bpy
from test_render_stage import render
from third_party import pybullet_data_dir

from ulip2_pipeline.stages.points.stage import read_points

pytestmark = pytest.mark.render

TRIMESH_FORMATS = ("glb", "gltf", "obj", "ply", "stl", "off", "dae", "3mf")
BLENDER_FORMATS = ("fbx", "blend", "usd", "usda", "usdc", "usdz", "abc")

BLENDER_EXPORTS = textwrap.dedent("""
    import bpy, sys
    out = sys.argv[-1]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add(location=(0.3, 0.0, -0.2), rotation=(0.2, 0.0, 0.5))
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(1.2, 0.4, 0.3))
    bpy.ops.export_scene.fbx(filepath=f"{out}/model.fbx")
    for ext in ("usd", "usda", "usdc", "usdz"):
        bpy.ops.wm.usd_export(filepath=f"{out}/model.{ext}")
    bpy.ops.wm.alembic_export(filepath=f"{out}/model.abc")
    bpy.ops.wm.save_as_mainfile(filepath=f"{out}/model.blend")
""")


def default_extensions() -> list[str]:
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())
    return schema["$defs"]["folder_source"]["properties"]["extensions"]["default"]


def test_the_default_extensions_are_exactly_the_tested_formats():
    assert sorted(default_extensions()) == sorted(TRIMESH_FORMATS + BLENDER_FORMATS)


def trimesh_files(folder: Path) -> dict[str, Path]:
    """One small asymmetric, coloured object per format trimesh writes (gltf with separate buffers)."""
    model = trimesh.util.concatenate(
        [
            trimesh.creation.box(extents=[1.0, 0.5, 0.3]),
            trimesh.creation.icosphere(radius=0.3).apply_translation([0.8, 0.3, 0.0]),
        ]
    )
    model.visual.vertex_colors = np.tile([30, 160, 90, 255], (len(model.vertices), 1))
    files = {}
    for ext in TRIMESH_FORMATS:
        if ext == "gltf":
            (folder / "gltf").mkdir()
            for name, data in model.export(file_type="gltf").items():
                (folder / "gltf" / name).write_bytes(data)
            files[ext] = folder / "gltf" / "model.gltf"
            continue
        data = model.export(file_type=ext)
        files[ext] = folder / f"model.{ext}"
        files[ext].write_bytes(data if isinstance(data, bytes) else data.encode())
    return files


def test_every_listed_format_gets_points_and_views_in_one_frame(tmp_path):
    files = trimesh_files(tmp_path)
    run_bpy(BLENDER_EXPORTS, str(tmp_path))
    files.update({ext: tmp_path / f"model.{ext}" for ext in BLENDER_FORMATS})
    rows, failures, summary = render(tmp_path, files, views=2, resolution=64, samples=4, depth=False)
    point_failures = pq.read_table(tmp_path / "pf.parquet").to_pylist()
    assert point_failures == []
    assert failures == {}
    table = pq.read_table(tmp_path / "points.parquet").to_pylist()
    readers = {r["uid"]: r["reader"] for r in table}
    assert readers == {**{e: "trimesh" for e in TRIMESH_FORMATS}, **{e: "blender" for e in BLENDER_FORMATS}}
    assert summary["rendered"] == len(files)
    assert {r["normalisation_source"] for r in rows} == {"points"}
    points = read_points(tmp_path / "points.parquet")
    index = {uid: i for i, uid in enumerate(points["uid"])}
    for row in rows:
        assert_points_on_silhouette(points["xyz"][index[row["uid"]]], row, coverage=0.6)
    # The same object in every trimesh format: the same frame.
    centers = np.array([r["center"] for r in table if r["reader"] == "trimesh"])
    assert np.ptp(centers, axis=0).max() < 1e-6


def test_real_third_party_files(tmp_path):
    data = pybullet_data_dir()
    files = {
        "duck_obj": data / "duck.obj",
        "chassis_dae": data / "racecar" / "meshes" / "chassis.dae",
        "wheel_stl": data / "racecar" / "meshes" / "left_front_wheel.STL",
        "duck_dae": data / "duck.dae",
    }
    rows, failures, _ = render(tmp_path, files, views=3, resolution=64, samples=4, depth=False)
    assert pq.read_table(tmp_path / "pf.parquet").num_rows == 0
    assert failures == {}
    table = {r["uid"]: r for r in pq.read_table(tmp_path / "points.parquet").to_pylist()}
    assert {u: r["colour_sources"] for u, r in table.items()} == {
        "duck_obj": ["texture"],
        "duck_dae": ["texture"],
        "chassis_dae": ["vertex"],
        "wheel_stl": ["none"],
    }
    assert {r["reader"] for r in table.values()} == {"trimesh"}
    duck = np.array(table["duck_dae"]["rgb"]).mean(axis=0)
    assert duck[0] > 200
    assert duck[1] > 150
    assert duck[2] < 40
    points = read_points(tmp_path / "points.parquet")
    index = {uid: i for i, uid in enumerate(points["uid"])}
    assert {r["normalisation_source"] for r in rows} == {"points"}
    for row in rows:
        assert_points_on_silhouette(points["xyz"][index[row["uid"]]], row, coverage=0.6)
