import numpy as np
import pyarrow.parquet as pq
import trimesh
from conftest import dataset_settings

from ulip2_pipeline.sources import SourceObject
from ulip2_pipeline.stages.manifest import build_manifest, write_manifest
from ulip2_pipeline.stages.points import stage as points_stage
from ulip2_pipeline.stages.points.stage import read_points


def dataset_cfg(**points):
    return dataset_settings(seed=3, **{"timeout_s": 60.0, "max_memory_mb": 2000, **points})


def write_shard_inputs(tmp_path):
    root = tmp_path / "meshes"
    root.mkdir()
    trimesh.creation.icosphere().export(root / "good1.ply")
    trimesh.creation.box().export(root / "good2.stl")
    (root / "broken.glb").write_bytes(b"glTF garbage")
    (root / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    objects = [SourceObject(uid=p.stem, path=p, root=root, category="c") for p in sorted(root.iterdir())]
    write_manifest(build_manifest(objects, shard_size=10)[0], tmp_path / "manifest.parquet")
    return tmp_path / "manifest.parquet"


def test_broken_meshes_become_failure_rows_and_the_shard_succeeds(tmp_path):
    manifest = write_shard_inputs(tmp_path)
    summary = points_stage.run_shard(
        points_stage.Inputs(manifest, "00000"),
        dataset_cfg(count=3000, prefix_sizes=[1024]),
        points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
    )
    assert summary["sampled"] == 2
    assert summary["failed"] == 2
    failures = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert {(f["uid"], f["reason"]) for f in failures} == {("broken", "unreadable"), ("flat", "no_area")}
    assert all(f["stage"] == "points" and f["detail"] for f in failures)
    points = read_points(tmp_path / "p.parquet")
    assert list(points["uid"]) == ["good1", "good2"]
    assert points["xyz"].shape == (2, 3000, 3)
    assert points["rgb"].shape == (2, 3000, 3)
    assert np.allclose(np.linalg.norm(points["xyz"], axis=2).max(axis=1), 1.0)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column("up_axis").to_pylist() == ["y", "y"]
    assert b"ulip2.points" in table.schema.metadata


def test_same_inputs_give_identical_shard_bytes(tmp_path):
    manifest = write_shard_inputs(tmp_path)
    for name in ("a", "b"):
        points_stage.run_shard(
            points_stage.Inputs(manifest, "00000"),
            dataset_cfg(count=2000),
            points_stage.Outputs(tmp_path / f"{name}.parquet", tmp_path / f"{name}_f.parquet"),
        )
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_a_changed_source_file_is_a_failure_not_stale_data(tmp_path):
    manifest = write_shard_inputs(tmp_path)
    with open(tmp_path / "meshes" / "good1.ply", "ab") as f:
        f.write(b"\n")
    points_stage.run_shard(
        points_stage.Inputs(manifest, "00000"),
        dataset_cfg(count=500),
        points_stage.Outputs(tmp_path / "p.parquet", tmp_path / "f.parquet"),
    )
    reasons = {f["uid"]: f["reason"] for f in pq.read_table(tmp_path / "f.parquet").to_pylist()}
    assert reasons["good1"] == "source_changed"
