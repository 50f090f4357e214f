"""Deliberately malformed files get a reason a person can act on, never ``internal_error``.

Each file goes through ``points_for_object``, what the points worker runs for one object,
and the whole set through the stage's supervised worker. Blender is never loaded into
the test process: a file that would fall through to it fails the test instead.
"""

import base64
import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh
from conftest import points_settings
from PIL import Image
from test_points_isolation import run

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points import readers
from ulip2_pipeline.stages.points.face_count import declared_faces, gltf_version_problem, uses_draco
from ulip2_pipeline.stages.points.stage import points_for_object

TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
INDICES = np.array([0, 1, 2], np.uint16)


@pytest.fixture(autouse=True)
def no_blender(monkeypatch):
    def refuse(path, *args):
        raise AssertionError(f"{path.name} went on to Blender: the malformed input was not recognised")

    monkeypatch.setattr(readers, "_blender", refuse)


def failure_of(path) -> ObjectFailure:
    with pytest.raises(ObjectFailure) as info:
        points_for_object(path, path.stem, None, points_settings(count=256), seed=0)
    return info.value


def gltf_1_0(asset: bool = True, buffer_uri: str | None = None) -> dict:
    """A one-triangle glTF 1.0 document: every top-level collection is a dict keyed by name."""
    data = TRIANGLE.tobytes() + INDICES.tobytes() + b"\0\0"
    document = {
        "buffers": {"b": {"uri": buffer_uri or "data:;base64," + base64.b64encode(data).decode(), "byteLength": 44}},
        "bufferViews": {
            "positions": {"buffer": "b", "byteOffset": 0, "byteLength": 36, "target": 34962},
            "indices": {"buffer": "b", "byteOffset": 36, "byteLength": 6, "target": 34963},
        },
        "accessors": {
            "p": {"bufferView": "positions", "byteOffset": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            "i": {"bufferView": "indices", "byteOffset": 0, "componentType": 5123, "count": 3, "type": "SCALAR"},
        },
        "meshes": {"triangle": {"primitives": [{"attributes": {"POSITION": "p"}, "indices": "i", "mode": 4}]}},
        "nodes": {"n": {"meshes": ["triangle"]}},
        "scene": "s",
        "scenes": {"s": {"nodes": ["n"]}},
    }
    if asset:
        document["asset"] = {"version": "1.0"}
    return document


def glb_version_1(document: dict, body: bytes) -> bytes:
    """glTF 1.0's binary container (KHR_binary_glTF): magic, version 1, length, contentLength,
    contentFormat 0 (JSON); then the JSON; then the binary body."""
    content = json.dumps(document).encode()
    content += b" " * (-len(content) % 4)
    return b"glTF" + struct.pack("<IIII", 1, 20 + len(content) + len(body), len(content), 0) + content + body


def ply(face: str, colours: bool = False) -> str:
    colour = "property uchar red\nproperty uchar green\nproperty uchar blue\n" if colours else ""
    rgb = " 10 20 30" if colours else ""
    return (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        f"{colour}element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        f"0 0 0{rgb}\n1 0 0{rgb}\n0 1 0{rgb}\n{face}\n"
    )


def gltf_2_with_indices(indices: list[int]) -> bytes:
    """A glTF 2.0 .glb whose triangle's index accessor holds ``indices`` (three vertices exist)."""
    index_bytes = np.array(indices, np.uint32).tobytes()
    data = TRIANGLE.tobytes() + index_bytes
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(data)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": len(index_bytes)},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5125, "count": len(indices), "type": "SCALAR"},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    content = json.dumps(document).encode()
    content += b" " * (-len(content) % 4)
    chunks = struct.pack("<II", len(content), 0x4E4F534A) + content + struct.pack("<II", len(data), 0x004E4942) + data
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


# --- glTF 1.0: neither trimesh nor Blender reads it ---


def test_a_gltf_1_0_file_with_meshes_keyed_by_name_is_an_unsupported_format(tmp_path):
    path = tmp_path / "old.gltf"
    path.write_text(json.dumps(gltf_1_0()))
    failure = failure_of(path)
    assert failure.reason == "unsupported_format"
    assert failure.detail.startswith("glTF 1.0 (asset.version 1.0); trimesh and Blender read only glTF 2.0")
    assert "gltf-pipeline -i old.gltf -o old-2.0.gltf" in failure.detail


def test_a_gltf_without_an_asset_but_with_meshes_keyed_by_name_is_taken_for_1_0(tmp_path):
    path = tmp_path / "bare.gltf"
    path.write_text(json.dumps(gltf_1_0(asset=False)))
    failure = failure_of(path)
    assert failure.reason == "unsupported_format"
    assert failure.detail.startswith("glTF 1.0 (no asset.version, and its meshes are keyed by name as in glTF 1.0)")


def test_a_binary_gltf_version_1_container_is_an_unsupported_format(tmp_path):
    path = tmp_path / "old.glb"
    body = TRIANGLE.tobytes() + INDICES.tobytes() + b"\0\0"
    path.write_bytes(glb_version_1(gltf_1_0(buffer_uri="data:,"), body))
    assert gltf_version_problem(path) is not None  # the JSON inside is read from the version-1 header
    failure = failure_of(path)
    assert failure.reason == "unsupported_format"
    assert failure.detail.startswith("glTF 1.0 (a binary glTF container of version 1, KHR_binary_glTF)")
    assert "gltf-pipeline -i old.glb -o old-2.0.glb" in failure.detail


def test_a_glb_version_1_container_with_a_2_0_looking_document_is_still_1_0(tmp_path):
    path = tmp_path / "mixed.glb"
    path.write_bytes(glb_version_1({"asset": {"version": "2.0"}, "meshes": []}, b""))
    assert gltf_version_problem(path).startswith("glTF 1.0 (a binary glTF container of version 1")


def test_a_later_major_version_is_unsupported_without_the_1_0_advice(tmp_path):
    path = tmp_path / "future.gltf"
    path.write_text(json.dumps({"asset": {"version": "3.0"}, "meshes": []}))
    failure = failure_of(path)
    assert failure.reason == "unsupported_format"
    assert failure.detail == "glTF 3.0 (asset.version 3.0); trimesh and Blender read only glTF 2.0"


def test_a_gltf_2_0_file_is_no_version_problem(tmp_path):
    trimesh.creation.box().export(tmp_path / "box.glb")
    assert gltf_version_problem(tmp_path / "box.glb") is None
    assert points_for_object(tmp_path / "box.glb", "box", None, points_settings(count=256), seed=0).num_faces == 12


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",  # JSON, but not an object
        json.dumps({"asset": {"version": "2.0"}, "extensionsUsed": 5}),
        json.dumps({"asset": {"version": "2.0"}, "nodes": ["x"], "meshes": [{"primitives": "y"}]}),
        json.dumps({"asset": "2.0", "meshes": {"m": 1}}),
        "[" * 100_000 + "]" * 100_000,  # nested past the JSON parser's recursion limit
        "\xff\xfe not json",
    ],
)
def test_the_gltf_guards_leave_any_malformed_json_to_the_loader(tmp_path, content):
    path = tmp_path / "odd.gltf"
    path.write_text(content, encoding="latin-1")
    assert declared_faces(path) is None or declared_faces(path) >= 0
    assert uses_draco(path) is False
    assert gltf_version_problem(path) is None or "1.0" in gltf_version_problem(path)


# --- faces naming vertices that do not exist ---


def test_an_obj_face_naming_a_missing_vertex_is_an_invalid_mesh(tmp_path):
    path = tmp_path / "missing.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 99\n")
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == (
        "faces reference vertex 99 (first on line 5) but the file has 3 vertices (OBJ indices start at 1)"
    )


def test_an_obj_face_counting_back_past_the_first_vertex_is_an_invalid_mesh(tmp_path):
    path = tmp_path / "back.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nf 1 2 -9\n")
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == (
        "the face on line 5 references vertex -9 (counting back from the last), but only 3 vertices are defined "
        "before it"
    )


@pytest.mark.parametrize("colours", [False, True])
@pytest.mark.parametrize("index", [812, -5])
def test_a_ply_face_with_an_out_of_range_index_is_an_invalid_mesh(tmp_path, index, colours):
    path = tmp_path / "bad.ply"
    path.write_text(ply(f"3 0 1 {index}", colours))
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == (
        f"faces reference vertex {index} but the mesh has 3 vertices (indices 0 to 2); "
        "1 of 1 faces name a vertex that does not exist"
    )


def test_a_gltf_index_accessor_past_the_vertices_is_an_invalid_mesh(tmp_path):
    path = tmp_path / "indices.glb"
    path.write_bytes(gltf_2_with_indices([0, 1, 2, 0, 2, 812]))
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == (
        "faces reference vertex 812 but the mesh has 3 vertices (indices 0 to 2); "
        "1 of 2 faces name a vertex that does not exist"
    )


def test_an_obj_vertex_line_missing_a_coordinate_is_an_invalid_mesh(tmp_path):
    path = tmp_path / "short.obj"  # trimesh loads its vertices as a (3, 2) array
    path.write_text("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n")
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == (
        "mesh 'short.obj': the vertices came out as an array of shape (3, 2), not (n, 3): "
        "are some vertex lines missing a coordinate?"
    )


def test_an_off_face_with_an_out_of_range_index_is_an_invalid_mesh(tmp_path):
    path = tmp_path / "bad.off"
    path.write_text("OFF\n# a comment\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 812\n")
    failure = failure_of(path)
    assert failure.reason == "invalid_mesh"
    assert failure.detail == "face 1 references vertex 812 but the file has 3 vertices (indices 0 to 2)"


# --- coordinates that are not numbers ---


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_an_obj_with_a_non_finite_coordinate_is_non_finite(tmp_path, value):
    path = tmp_path / "nan.obj"
    path.write_text(f"v 0 0 0\nv 1 {value} 0\nv 0 1 0\nf 1 2 3\n")
    failure = failure_of(path)
    assert failure.reason == "non_finite"
    assert failure.detail == "1 vertices with NaN or infinite coordinates"


def test_a_nan_texture_coordinate_is_non_finite(tmp_path):
    Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "uv.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd red.png\n")
    path = tmp_path / "uv.obj"
    path.write_text("mtllib uv.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 nan\nvt 0 1\nusemtl m\nf 1/1 2/2 3/3\n")
    failure = failure_of(path)
    assert failure.reason == "non_finite"
    assert failure.detail == "1 texture coordinates (UV) with NaN or infinite values"


def test_one_component_obj_texture_coordinates_are_read_with_v_0(tmp_path):
    """Not malformed: OBJ's `vt u [v [w]]` lets v default to 0. It once crashed the texture lookup."""
    Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "u.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd red.png\n")
    path = tmp_path / "u.obj"
    path.write_text("mtllib u.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0.1\nvt 0.5\nvt 0.9\nusemtl m\nf 1/1 2/2 3/3\n")
    cloud = points_for_object(path, "u", None, points_settings(count=256), seed=0).cloud
    assert cloud.colour_sources == ["texture"]
    assert (cloud.rgb == [200, 10, 10]).all()


# --- the file itself ---


def test_a_directory_in_place_of_the_source_is_an_unreadable_file(tmp_path):
    (tmp_path / "folder.obj").mkdir()
    with pytest.raises(ObjectFailure) as info:
        points_for_object(tmp_path / "folder.obj", "folder", "0" * 64, points_settings(count=256), seed=0)
    assert info.value.reason == "unreadable_file"
    assert info.value.detail.startswith(f"{tmp_path / 'folder.obj'} could not be read to check it: IsADirectoryError")


# --- the same files in the stage's own worker ---


def test_the_stage_records_every_malformed_file_with_its_reason_and_samples_the_rest(tmp_path):
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.box().export(meshes / "good.stl")
    (meshes / "old.gltf").write_text(json.dumps(gltf_1_0()))
    body = TRIANGLE.tobytes() + INDICES.tobytes() + b"\0\0"
    (meshes / "old.glb").write_bytes(glb_version_1(gltf_1_0(buffer_uri="data:,"), body))
    (meshes / "missing.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n")
    (meshes / "range.ply").write_text(ply("3 0 1 812"))
    (meshes / "nan.obj").write_text("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n")
    files = {path.stem + path.suffix.replace(".", "_"): path for path in meshes.iterdir()}
    summary, failures, sampled = run(tmp_path, files)
    assert {uid: row["reason"] for uid, row in failures.items()} == {
        "old_gltf": "unsupported_format",
        "old_glb": "unsupported_format",
        "missing_obj": "invalid_mesh",
        "range_ply": "invalid_mesh",
        "nan_obj": "non_finite",
    }
    assert failures["range_ply"]["detail"].startswith("faces reference vertex 812 but the mesh has 3 vertices")
    assert sampled == ["good_stl"]
    assert summary["failed"] == 5
    assert pq.read_table(tmp_path / "f.parquet").column("reason").to_pylist().count("internal_error") == 0


# --- the render stage's importer says the same of glTF 1.0 ---

RENDER_IMPORT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ulip2_pipeline.failures import ObjectFailure
    from ulip2_pipeline.stages.render import blender_scene

    blender_scene.reset_scene()
    try:
        blender_scene.import_file(Path(sys.argv[-1]))
    except ObjectFailure as failure:
        print(f"{failure.reason}: {failure.detail}")
""")


@pytest.mark.render
def test_the_render_stage_turns_gltf_1_0_away_as_an_unsupported_format(tmp_path):
    path = tmp_path / "old.glb"
    body = TRIANGLE.tobytes() + INDICES.tobytes() + b"\0\0"
    path.write_bytes(glb_version_1(gltf_1_0(buffer_uri="data:,"), body))
    result = subprocess.run(
        [sys.executable, "-c", RENDER_IMPORT, str(path)], capture_output=True, text=True, timeout=300, check=True
    )
    assert "unsupported_format: glTF 1.0 (a binary glTF container of version 1" in result.stdout
