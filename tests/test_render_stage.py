"""The render stage with the real bpy worker, on tiny settings (64 px, 4 views, 4 samples)."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trimesh
from conftest import dataset_settings, textured_square
from PIL import Image
from projection import alpha, assert_points_on_silhouette, project

from ulip2_pipeline.atomic import file_sha256
from ulip2_pipeline.config import default_config
from ulip2_pipeline.settings import RenderSettings
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA, write_manifest
from ulip2_pipeline.stages.points import stage as points_stage
from ulip2_pipeline.stages.points.stage import read_points
from ulip2_pipeline.stages.render import stage as render_stage

pytestmark = pytest.mark.render

# The schema's render defaults, small and fast.
SETTINGS = {
    **default_config()["render_presets"]["test"],
    "views": 4,
    "resolution": 64,
    "depth": True,
    "samples": 4,
    "background": "transparent",
    "max_faces": 1_000_000,
    "timeout_s": 60.0,
    "max_memory_mb": 4000,
}
DATASET = dataset_settings(count=4000, prefix_sizes=[1024], timeout_s=60.0, max_memory_mb=2000)


def manifest_for(tmp_path, files, name="manifest.parquet"):
    """A one-shard manifest over ``files`` (uid -> path); a FIFO is not read (it would block)."""
    uids = sorted(files)
    digests = [file_sha256(files[u]) if files[u].is_file() else "0" * 64 for u in uids]
    table = pa.table(
        {
            "uid": uids,
            "source": [str(files[u]) for u in uids],
            "sha256": digests,
            "bytes": [files[u].stat().st_size for u in uids],
            "mtime_ns": [0] * len(uids),
            "category": [None] * len(uids),
            "shard": ["00000"] * len(uids),
        },
        schema=MANIFEST_SCHEMA,
    )
    write_manifest(table, tmp_path / name)
    return tmp_path / name


def render(tmp_path, files, name="render", with_points=True, dataset=DATASET, **overrides):
    manifest = manifest_for(tmp_path, files)
    points = None
    if with_points:
        points = tmp_path / "points.parquet"
        cfg = dataset.replace(points=dataset.points.replace(max_faces=10**7))
        points_stage.run_shard(
            points_stage.Inputs(manifest, "00000"), cfg, points_stage.Outputs(points, tmp_path / "pf.parquet")
        )
    settings = RenderSettings.from_config(dict(SETTINGS, **overrides))
    summary = render_stage.run_shard(
        render_stage.Inputs(manifest, points, "00000"),
        dataset,
        settings.replace(threads=2),
        render_stage.Outputs(
            tmp_path / f"{name}.parquet", tmp_path / f"{name}_failures.parquet", tmp_path / f"{name}_logs"
        ),
    )
    rows = pq.read_table(tmp_path / f"{name}.parquet").to_pylist()
    failures = {f["uid"]: f for f in pq.read_table(tmp_path / f"{name}_failures.parquet").to_pylist()}
    return rows, failures, summary


@pytest.fixture
def meshes(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(textured_square(), transform=trimesh.transformations.rotation_matrix(0.4, [0, 1, 0]))
    box = trimesh.creation.box(extents=[0.5, 1.5, 0.3])
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([0.8, 0.2, 0.1]))
    (tmp_path / "scene.glb").write_bytes(scene.export(file_type="glb"))
    bunny = trimesh.creation.icosphere(subdivisions=3)
    bunny.apply_scale([1.0, 0.6, 0.4])
    bunny.apply_translation([3.0, 1.0, -2.0])
    bunny.export(tmp_path / "blob.obj")
    trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16]).export(tmp_path / "capsule.ply")
    return {"scene": tmp_path / "scene.glb", "blob": tmp_path / "blob.obj", "capsule": tmp_path / "capsule.ply"}


def test_points_project_onto_the_rendered_silhouette_and_depth(tmp_path, meshes):
    rows, failures, summary = render(tmp_path, meshes)
    assert failures == {}
    assert summary["rendered"] == 3
    points = read_points(tmp_path / "points.parquet")
    index = {uid: i for i, uid in enumerate(points["uid"])}
    for row in rows:
        assert row["normalisation_source"] == "points"
        xyz = points["xyz"][index[row["uid"]]].astype(np.float64)
        assert_points_on_silhouette(xyz, row)
        cols, rws, z = project(xyz, row)
        depth = np.frombuffer(row["depth"], "<f4").reshape(64, 64)
        nearest = np.full((64, 64), np.inf)
        np.minimum.at(nearest, (rws, cols), z)
        both = np.isfinite(nearest) & (depth > 0)
        # Within about a pixel footprint (0.03 units here) of the nearest sample in that pixel.
        assert np.median(np.abs(nearest[both] - depth[both])) < 0.06


def test_views_and_angles_follow_the_preset(tmp_path, meshes):
    rows, _, _ = render(tmp_path, {"capsule": meshes["capsule"]}, views=6, depth=False, background="white")
    assert [r["view"] for r in rows] == list(range(6))
    assert [r["azimuth_deg"] for r in rows] == pytest.approx([0, 60, 120, 180, 240, 300])
    assert all(r["depth"] is None for r in rows)
    image = Image.open(io.BytesIO(rows[0]["png"]))
    assert image.mode == "RGB"
    assert image.size == (64, 64)
    assert np.asarray(image)[0, 0].tolist() == [255, 255, 255]


def test_same_input_and_config_give_identical_png_bytes(tmp_path, meshes):
    first, _, _ = render(tmp_path, meshes, name="a")
    second, _, _ = render(tmp_path, meshes, name="b")
    assert [r["png"] for r in first] == [r["png"] for r in second]
    assert [r["depth"] for r in first] == [r["depth"] for r in second]


def test_a_hanging_object_is_cut_off_and_the_rest_of_the_shard_renders(tmp_path, meshes):
    hang = tmp_path / "hang.obj"
    os.mkfifo(hang)  # opening it for reading blocks forever, like a stalled network file system
    files = {"a_first": meshes["capsule"], "b_hang": hang, "c_last": meshes["blob"]}
    rows, failures, summary = render(tmp_path, files, with_points=False, timeout_s=8.0, depth=False)
    assert failures["b_hang"]["reason"] == "timeout"
    assert {r["uid"] for r in rows} == {"a_first", "c_last"}
    assert len(summary["worker_startups_s"]) == 2  # killed once, restarted for the rest


def test_broken_empty_and_oversized_files_land_in_the_ledger_with_their_blender_log(tmp_path, meshes):
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    files = {"broken": broken, "empty": empty, "good": meshes["capsule"], "big": meshes["blob"]}
    rows, failures, _ = render(tmp_path, files, with_points=False, max_faces=1000, depth=False)
    assert failures["broken"]["reason"] == "importer_error"
    assert "Blender log" in failures["broken"]["detail"]
    assert (tmp_path / "render_logs" / "broken.log").exists()
    assert failures["empty"]["reason"] == "empty"
    assert failures["big"]["reason"] == "too_many_faces"
    assert {r["uid"] for r in rows} == {"good"}
    assert not (tmp_path / "render_logs" / "good.log").exists()  # logs of clean renders are not kept


def test_missing_textures_are_counted_rendered_with_the_fallback_and_flagged(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd does_not_exist.png\n")
    (tmp_path / "m.obj").write_text(
        "mtllib m.mtl\nv -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl skin\nf 1/1 2/2 3/3 4/4\n"
    )
    rows, failures, _ = render(
        tmp_path, {"m": tmp_path / "m.obj"}, with_points=False, depth=False, missing_texture_rgb=[0.0, 0.0, 1.0]
    )
    assert failures["m"]["reason"] == "missing_texture"
    assert rows
    assert all(r["missing_textures"] == 1 for r in rows)
    pixels = np.asarray(Image.open(io.BytesIO(rows[0]["png"])).convert("RGBA"))
    lit = pixels[pixels[..., 3] == 255][:, :3].astype(int)
    assert (lit[:, 2] > lit[:, 0] + 40).mean() > 0.9  # blue fallback, not Blender's magenta


BLEND_WITH_SCRIPTS = textwrap.dedent("""
    import bpy, sys
    marker = sys.argv[-1]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("m")
    mesh.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
    obj = bpy.data.objects.new("plate", mesh)
    bpy.context.scene.collection.objects.link(obj)
    text = bpy.data.texts.new("autorun.py")
    text.write(f"open({marker!r} + '.text', 'w').write('ran')\\n")
    text.use_module = True  # 'Register': runs when the file is opened with auto-run on
    driver = obj.driver_add("location", 2).driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('pathlib').Path({marker!r} + '.driver').touch() or 0.0"
    bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-2])
""")


def test_a_blend_file_renders_without_running_its_embedded_python(tmp_path):
    marker = tmp_path / "marker"
    subprocess.run(
        [sys.executable, "-c", BLEND_WITH_SCRIPTS, str(tmp_path / "s.blend"), str(marker)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rows, failures, _ = render(tmp_path, {"s": tmp_path / "s.blend"}, with_points=False, depth=False)
    assert failures == {}
    assert rows[0]["normalisation_source"] == "render"
    assert (alpha(rows[0]) > 0).any()
    assert not (tmp_path / "marker.text").exists()
    assert not (tmp_path / "marker.driver").exists()


DRACO_EXPORT = textwrap.dedent("""
    import bpy, sys
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8)
    bpy.ops.export_scene.gltf(filepath=sys.argv[-1], export_draco_mesh_compression_enable=True)
""")


def test_draco_compressed_gltf_renders(tmp_path):
    path = tmp_path / "draco.glb"
    subprocess.run([sys.executable, "-c", DRACO_EXPORT, str(path)], check=True, capture_output=True, timeout=120)
    assert b"KHR_draco_mesh_compression" in path.read_bytes()
    rows, failures, _ = render(tmp_path, {"draco": path}, with_points=False, depth=False)
    assert failures == {}
    assert len(rows) == 4
    assert (alpha(rows[0]) > 0).mean() > 0.2


KILLABLE_RUN = textwrap.dedent("""
    import sys, json
    from ulip2_pipeline.settings import DatasetSettings, RenderSettings
    from ulip2_pipeline.stages.render import stage as render_stage
    args = json.loads(sys.argv[-1])
    render_stage.run_shard(
        render_stage.Inputs(args["manifest"], None, "00000"),
        DatasetSettings.from_config(args["dataset"]),
        RenderSettings.from_config(args["settings"]).replace(threads=1),
        render_stage.Outputs(args["out"], args["failures"], args["logs"]),
    )
""")


def test_a_killed_job_leaves_no_partial_shard_and_a_rerun_completes(tmp_path, meshes):
    import json
    import signal
    import time

    files = {f"obj{i}": meshes["blob"] for i in range(6)}
    args = {
        "manifest": str(manifest_for(tmp_path, files)),
        "dataset": DATASET.as_config(),
        "out": str(tmp_path / "r.parquet"),
        "failures": str(tmp_path / "f.parquet"),
        "logs": str(tmp_path / "logs"),
        "settings": dict(SETTINGS, views=8, resolution=96, depth=False),
    }
    process = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, json.dumps(args)], start_new_session=True)
    deadline = time.time() + 60
    while not (tmp_path / "logs" / "obj1.log").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole job, worker included, as a scheduler would
    process.wait()
    assert not (tmp_path / "r.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    subprocess.run([sys.executable, "-c", KILLABLE_RUN, json.dumps(args)], check=True, timeout=300)
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 6 * 8


FBX_AND_USD_EXPORT = textwrap.dedent("""
    import bpy, sys
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    bpy.ops.export_scene.fbx(filepath=sys.argv[-2])
    bpy.ops.wm.usd_export(filepath=sys.argv[-1])
""")


def test_fbx_and_usd_render_through_blenders_importers(tmp_path):
    fbx, usd = tmp_path / "monkey.fbx", tmp_path / "monkey.usdc"
    subprocess.run(
        [sys.executable, "-c", FBX_AND_USD_EXPORT, str(fbx), str(usd)], check=True, capture_output=True, timeout=120
    )
    rows, failures, _ = render(tmp_path, {"fbx": fbx, "usd": usd}, with_points=False, depth=False)
    assert failures == {}
    assert {r["uid"] for r in rows} == {"fbx", "usd"}
    assert all((alpha(r) > 0).mean() > 0.1 for r in rows)
    assert {r["normalisation_source"] for r in rows} == {"render"}


def test_an_empty_shard_writes_valid_empty_outputs_without_starting_blender(tmp_path):
    rows, failures, summary = render(tmp_path, {}, with_points=True)
    assert rows == []
    assert failures == {}
    assert summary["worker_startups_s"] == []
    assert pq.read_table(tmp_path / "render.parquet").schema.field("png").type == pa.binary()


def test_a_file_changed_in_place_is_caught_by_its_checksum(tmp_path, meshes):
    manifest = manifest_for(tmp_path, meshes)
    data = bytearray(meshes["capsule"].read_bytes())
    data[-10] ^= 0xFF  # same size, other content
    meshes["capsule"].write_bytes(bytes(data))
    render_stage.run_shard(
        render_stage.Inputs(manifest, None, "00000"),
        DATASET,
        RenderSettings.from_config(dict(SETTINGS, views=1, depth=False)),
        render_stage.Outputs(tmp_path / "r.parquet", tmp_path / "f.parquet", tmp_path / "logs"),
    )
    failures = {f["uid"]: f for f in pq.read_table(tmp_path / "f.parquet").to_pylist()}
    assert list(failures) == ["capsule"]
    assert failures["capsule"]["reason"] == "source_changed"
    assert "--forcerun manifest" in failures["capsule"]["detail"]
    assert {r["uid"] for r in pq.read_table(tmp_path / "r.parquet").to_pylist()} == {"blob", "scene"}


def test_vertex_colours_without_a_material_show_in_the_views(tmp_path):
    ball = trimesh.creation.icosphere(subdivisions=3)
    ball.visual.vertex_colors = np.where(ball.vertices[:, [0]] > 0, [255, 0, 0, 255], [0, 0, 255, 255])
    ball.export(tmp_path / "ball.ply")  # ply: Blender imports the colours but gives the mesh no material
    rows, failures, _ = render(tmp_path, {"ball": tmp_path / "ball.ply"}, views=1, depth=False)
    assert failures == {}
    pixels = np.asarray(Image.open(io.BytesIO(rows[0]["png"])).convert("RGBA")).astype(int)
    lit = pixels[pixels[..., 3] == 255][:, :3]
    red = (lit[:, 0] > lit[:, 1] + 60) & (lit[:, 0] > lit[:, 2] + 60)
    blue = (lit[:, 2] > lit[:, 0] + 60) & (lit[:, 2] > lit[:, 1] + 60)
    assert red.mean() > 0.3
    assert blue.mean() > 0.3


def test_a_mesh_without_any_colour_renders_in_the_points_default_colour(tmp_path):
    trimesh.creation.box(extents=[1.0, 0.8, 0.6]).export(tmp_path / "plain.stl")
    red = DATASET.replace(points=DATASET.points.replace(default_rgb=[0.9, 0.1, 0.1]))
    rows, failures, _ = render(
        tmp_path, {"plain": tmp_path / "plain.stl"}, dataset=red, views=2, background="transparent", depth=False
    )
    assert failures == {}
    for row in rows:
        rgba = np.asarray(Image.open(io.BytesIO(row["png"])).convert("RGBA")).reshape(-1, 4).astype(float)
        surface = rgba[rgba[:, 3] > 250, :3]
        assert len(surface) > 100
        red_mean, green_mean, blue_mean = surface.mean(axis=0)
        assert red_mean > 2 * green_mean
        assert red_mean > 2 * blue_mean
