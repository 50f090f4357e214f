"""Face counts from headers and structure, without loading the mesh."""

import json
import struct

import numpy as np
import pytest
import trimesh

from ulip2_pipeline.stages.points import face_count
from ulip2_pipeline.stages.points.face_count import declared_faces, uses_draco


def sphere():
    return trimesh.creation.icosphere(subdivisions=2)  # 320 triangles


@pytest.mark.parametrize("ext", ["ply", "stl", "off", "obj", "glb"])
def test_the_count_of_each_format_equals_the_loaded_faces(tmp_path, ext):
    path = tmp_path / f"s.{ext}"
    sphere().export(path)
    assert declared_faces(path) == len(sphere().faces) == 320


def test_gltf_with_separate_buffers_and_instanced_meshes(tmp_path):
    scene = trimesh.Scene()
    box = trimesh.creation.box()  # 12 triangles
    scene.add_geometry(box, geom_name="box", node_name="a")
    moved = trimesh.transformations.translation_matrix([3, 0, 0])
    scene.add_geometry(box, geom_name="box", node_name="b", transform=moved)
    for name, data in scene.export(file_type="gltf").items():
        (tmp_path / name).write_bytes(data)
    document = json.loads((tmp_path / "model.gltf").read_text())
    for node in document["nodes"]:  # both nodes instance one mesh (the second stays unused)
        if "mesh" in node:
            node["mesh"] = 0
    (tmp_path / "model.gltf").write_text(json.dumps(document))
    # Loaders flatten the scene: the instanced mesh counts twice, the unused one not at all.
    loaded = trimesh.load_scene(tmp_path / "model.gltf").to_geometry()
    assert declared_faces(tmp_path / "model.gltf") == 24 == len(loaded.faces)


def test_ascii_stl_and_polygons_count_at_least_one_triangle_each(tmp_path):
    (tmp_path / "a.stl").write_text(trimesh.exchange.stl.export_stl_ascii(sphere()))
    assert declared_faces(tmp_path / "a.stl") == 320
    (tmp_path / "quads.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\nf\t1 3 4\n# f 9 9 9\n")
    assert declared_faces(tmp_path / "quads.obj") == 2  # a lower bound: the quad gives 2 triangles when loaded
    (tmp_path / "c.off").write_text("OFF\n# a comment\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    assert declared_faces(tmp_path / "c.off") == 2


def test_obj_face_lines_across_block_seams_are_counted_once(tmp_path, monkeypatch):
    lines = "".join(f"v {i} 0 {i % 3}\n" for i in range(30)) + "".join(f"f {i} {i + 1} {i + 2}\n" for i in range(1, 28))
    (tmp_path / "m.obj").write_text(lines)
    for chunk in (1, 2, 3, 5, 7, 64):
        monkeypatch.setattr(face_count, "CHUNK", chunk)
        assert declared_faces(tmp_path / "m.obj") == 27, chunk


def test_huge_declared_counts_in_tiny_files(tmp_path):
    (tmp_path / "big.ply").write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 5000000000\n"
        b"property list uchar int vertex_indices\nend_header\n"
    )
    (tmp_path / "big.stl").write_bytes(bytes(80) + struct.pack("<I", 4_000_000_000))
    (tmp_path / "big.off").write_text("OFF\n3 3000000000 0\n")
    for name in ("big.ply", "big.stl", "big.off"):
        assert declared_faces(tmp_path / name) >= 3_000_000_000, name


def test_unknown_or_malformed_gives_none(tmp_path):
    (tmp_path / "x.dae").write_text("<COLLADA/>")
    (tmp_path / "bad.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    (tmp_path / "bad.ply").write_bytes(b"ply\nelement face lots\nend_header\n")
    for name in ("x.dae", "bad.glb", "bad.ply"):
        assert declared_faces(tmp_path / name) is None, name


def test_draco_is_recognised_from_extensions_used(tmp_path):
    plain = tmp_path / "plain.glb"
    plain.write_bytes(sphere().export(file_type="glb"))
    assert not uses_draco(plain)
    document = {"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_draco_mesh_compression"]}
    (tmp_path / "d.gltf").write_text(json.dumps(document))
    payload = json.dumps(document).encode().ljust(4 * ((len(json.dumps(document)) + 3) // 4))
    (tmp_path / "d.glb").write_bytes(
        b"glTF" + struct.pack("<II", 2, 20 + len(payload)) + struct.pack("<II", len(payload), 0x4E4F534A) + payload
    )
    assert uses_draco(tmp_path / "d.gltf")
    assert uses_draco(tmp_path / "d.glb")
    assert not uses_draco(tmp_path / "missing.glb")
    assert np.isscalar(declared_faces(tmp_path / "d.glb"))  # no meshes: 0 triangles
