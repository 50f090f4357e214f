"""The points stage isolates each object: hangs, memory blow-ups, huge meshes and changed files
cost that object only, and every failure is named in the job's log."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trimesh
from conftest import dataset_settings, points_settings

from ulip2_pipeline.atomic import file_sha256
from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA, write_manifest
from ulip2_pipeline.stages.points import readers
from ulip2_pipeline.stages.points import stage as points_stage
from ulip2_pipeline.stages.points.stage import points_for_object, read_points
from ulip2_pipeline.workflow import log_to


def dataset_cfg(**points):
    return dataset_settings(**{"count": 1000, "timeout_s": 60.0, "max_memory_mb": 2000, **points})


def manifest_of(tmp_path, files):
    """A one-shard manifest with the files' real checksums (a FIFO gets a dummy one: reading it blocks)."""
    uids = sorted(files)
    table = pa.table(
        {
            "uid": uids,
            "source": [str(files[u]) for u in uids],
            "sha256": [file_sha256(files[u]) if files[u].is_file() else "0" * 64 for u in uids],
            "bytes": [0] * len(uids),
            "mtime_ns": [0] * len(uids),
            "category": [None] * len(uids),
            "shard": ["00000"] * len(uids),
        },
        schema=MANIFEST_SCHEMA,
    )
    write_manifest(table, tmp_path / "manifest.parquet")
    return tmp_path / "manifest.parquet"


def run(tmp_path, files, **points):
    summary = points_stage.run_shard(
        points_stage.Inputs(manifest_of(tmp_path, files), "00000"),
        dataset_cfg(**points),
        points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
    )
    failures = {f["uid"]: f for f in pq.read_table(tmp_path / "f.parquet").to_pylist()}
    return summary, failures, list(read_points(tmp_path / "p.parquet")["uid"])


@pytest.fixture
def good(tmp_path):
    trimesh.creation.icosphere().export(tmp_path / "ball.ply")
    trimesh.creation.box().export(tmp_path / "box.stl")
    return {"a_ball": tmp_path / "ball.ply", "z_box": tmp_path / "box.stl"}


def test_a_hanging_object_times_out_and_the_shard_goes_on_in_a_fresh_worker(tmp_path, good):
    hang = tmp_path / "hang.obj"
    os.mkfifo(hang)  # reading it blocks forever, like a stalled network file system
    summary, failures, sampled = run(tmp_path, {**good, "m_hang": hang}, timeout_s=3.0)
    assert failures["m_hang"]["reason"] == "timeout"
    assert sampled == ["a_ball", "z_box"]
    assert len(summary["worker_startups_s"]) == 2  # killed once, restarted for the rest


def test_a_memory_hog_is_killed_at_the_limit(tmp_path, good):
    hog = tmp_path / "hog.obj"  # two million vertices and one face: the face guard lets it through
    hog.write_bytes(b"v 0.123456 0.654321 0.111111\n" * 2_000_000 + b"f 1 2 3\n")
    summary, failures, sampled = run(tmp_path, {**good, "m_hog": hog}, max_memory_mb=300)
    assert failures["m_hog"]["reason"] == "out_of_memory"
    assert "over the limit of 300 MB" in failures["m_hog"]["detail"]
    assert sampled == ["a_ball", "z_box"]


def test_a_mesh_over_the_face_limit_by_its_header_is_never_loaded(tmp_path, good, monkeypatch):
    huge = tmp_path / "huge.ply"  # declares ten billion faces in a file of a few hundred bytes
    huge.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 10000000000\n"
        b"property list uchar int vertex_indices\nend_header\n"
    )
    loaded = []
    monkeypatch.setattr(readers, "load_parts", lambda *a: loaded.append(a))
    monkeypatch.setattr(readers, "_blender", lambda *a: loaded.append(a))
    with pytest.raises(ObjectFailure) as info:
        points_for_object(huge, "huge", None, points_settings(max_faces=1000), seed=0)
    assert info.value.reason == "too_many_faces"
    assert "not loaded" in info.value.detail
    assert loaded == []
    # The same in the stage's worker (where a load would have answered 'unreadable').
    _, failures, sampled = run(tmp_path, {**good, "m_huge": huge}, max_faces=5000)
    assert failures["m_huge"]["reason"] == "too_many_faces"
    assert "10000000000" in failures["m_huge"]["detail"]
    assert sampled == ["a_ball", "z_box"]


def test_a_file_changed_in_place_with_the_same_size_is_caught_by_its_checksum(tmp_path, good):
    manifest = manifest_of(tmp_path, good)
    data = bytearray(good["z_box"].read_bytes())
    data[100] ^= 0xFF
    good["z_box"].write_bytes(bytes(data))
    points_stage.run_shard(
        points_stage.Inputs(manifest, "00000"),
        dataset_cfg(),
        points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
    )
    (failure,) = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert failure["uid"] == "z_box"
    assert failure["reason"] == "source_changed"
    assert "--forcerun manifest" in failure["detail"]


def test_an_empty_shard_writes_valid_empty_outputs(tmp_path):
    write_manifest(MANIFEST_SCHEMA.empty_table(), tmp_path / "manifest.parquet")
    summary = points_stage.run_shard(
        points_stage.Inputs(tmp_path / "manifest.parquet", "00000"),
        dataset_cfg(),
        points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
    )
    assert summary["objects"] == 0
    assert summary["worker_startups_s"] == []
    points = read_points(tmp_path / "p.parquet")
    assert points["xyz"].shape == (0, 1000, 3)
    assert points["rgb"].shape == (0, 1000, 3)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 0
    assert "reader" in table.column_names
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 0


def test_every_failure_names_its_uid_and_reason_in_the_job_log(tmp_path, good):
    (tmp_path / "broken.stl").write_bytes(b"solid nothing here\n")
    (tmp_path / "gone.obj").write_text("v 0 0 0\n")
    files = {**good, "broken": tmp_path / "broken.stl", "gone": tmp_path / "gone.obj"}
    manifest = manifest_of(tmp_path, files)
    (tmp_path / "gone.obj").unlink()
    log = tmp_path / "job.log"
    log_to(log)
    try:
        points_stage.run_shard(
            points_stage.Inputs(manifest, "00000"),
            dataset_cfg(),
            points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
        )
    finally:
        log_to(None)
    text = log.read_text()
    failures = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert {f["uid"] for f in failures} == {"broken", "gone"}
    for failure in failures:
        assert f"WARNING ulip2_pipeline.stages.points.stage: {failure['uid']}: {failure['reason']}: " in text
