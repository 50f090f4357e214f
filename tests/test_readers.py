"""Which reader a file goes to (without loading Blender into the test process)."""

import pytest
import trimesh

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points import readers


@pytest.fixture
def blender_calls(monkeypatch):
    """Stands in for the Blender reader and records what it was asked to read."""
    calls = []

    def fake_blender(path, max_faces, up_axis):
        calls.append((path.name, up_axis))
        return []

    monkeypatch.setattr(readers, "_blender", fake_blender)
    return calls


@pytest.mark.parametrize("name", ["a.fbx", "a.blend", "a.usd", "a.usda", "a.usdc", "a.USDZ", "a.abc"])
def test_blender_only_formats_go_to_blender_directly(tmp_path, blender_calls, name):
    (tmp_path / name).write_bytes(b"whatever")
    _, reader = readers.read_parts(tmp_path / name, 100, "z")
    assert reader == "blender"
    assert blender_calls == [(name, "z")]


def test_draco_gltf_goes_to_blender_and_plain_gltf_to_trimesh(tmp_path, blender_calls):
    import json
    import struct

    (tmp_path / "plain.glb").write_bytes(trimesh.creation.box().export(file_type="glb"))
    assert readers.read_parts(tmp_path / "plain.glb", 100, "y")[1] == "trimesh"
    document = json.dumps({"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_draco_mesh_compression"]}).encode()
    document = document.ljust(4 * ((len(document) + 3) // 4))
    (tmp_path / "d.glb").write_bytes(
        b"glTF" + struct.pack("<II", 2, 20 + len(document)) + struct.pack("<II", len(document), 0x4E4F534A) + document
    )
    assert readers.read_parts(tmp_path / "d.glb", 100, "y")[1] == "blender"
    assert blender_calls == [("d.glb", "y")]


@pytest.mark.parametrize(
    "name,content",
    [
        ("broken.glb", b"glTF\x02\x00\x00\x00garbage"),
        (
            "empty.ply",
            b"ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\n"
            b"property list uchar int vertex_indices\nend_header\n",
        ),
    ],
)
def test_what_trimesh_cannot_read_gets_a_second_chance_in_blender(tmp_path, blender_calls, name, content):
    (tmp_path / name).write_bytes(content)
    _, reader = readers.read_parts(tmp_path / name, 100, "y")
    assert reader == "blender"
    assert [c[0] for c in blender_calls] == [name]


def test_when_both_fail_the_reason_is_blenders_and_the_detail_has_both(tmp_path, monkeypatch):
    def failing_blender(path, max_faces, up_axis):
        raise ObjectFailure("unreadable", "Blender could not import it: bad magic")

    monkeypatch.setattr(readers, "_blender", failing_blender)
    (tmp_path / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(ObjectFailure) as info:
        readers.read_parts(tmp_path / "broken.glb", 100, "y")
    assert info.value.reason == "unreadable"
    assert "bad magic" in info.value.detail
    assert "trimesh: unreadable" in info.value.detail


def test_no_second_chance_where_blender_would_only_ask_trimesh_again_or_the_mesh_is_just_bad(tmp_path, blender_calls):
    (tmp_path / "broken.off").write_text("OFF\nnonsense\n")
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(ObjectFailure):
        readers.read_parts(tmp_path / "broken.off", 100, "y")
    parts, reader = readers.read_parts(tmp_path / "flat.obj", 100, "y")  # zero area is the sampler's to report
    assert reader == "trimesh"
    assert blender_calls == []
