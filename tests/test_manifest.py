import hashlib
import os

import pyarrow.parquet as pq
import pytest

from ulip2_pipeline.manifest import (ManifestError, build_manifest, manifest_shards, read_shard,
                                     run_manifest, write_manifest)
from ulip2_pipeline.sources import SourceObject


def make_objects(root, names):
    root.mkdir(parents=True, exist_ok=True)
    objects = []
    for i, name in enumerate(names):
        path = root / f"{name}.obj"
        path.write_bytes(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n# {i}\n".encode())
        objects.append(SourceObject(uid=name, path=path, root=root, category="thing"))
    return objects


def test_sha256_sizes_and_shards(tmp_path):
    objects = make_objects(tmp_path / "meshes", [f"obj{i}" for i in range(7)])
    table = build_manifest(objects, shard_size=3)
    rows = table.to_pylist()
    for row in rows:
        data = open(row["source"], "rb").read()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["bytes"] == len(data)
    assert [r["shard"] for r in rows] == ["00000"] * 3 + ["00001"] * 3 + ["00002"]
    write_manifest(table, tmp_path / "manifest.parquet")
    assert manifest_shards(tmp_path / "manifest.parquet") == ["00000", "00001", "00002"]
    assert [r["uid"] for r in read_shard(tmp_path / "manifest.parquet", "00001")] == ["obj3", "obj4", "obj5"]


def test_duplicate_uids_are_rejected(tmp_path):
    objects = make_objects(tmp_path / "a", ["chair"]) + make_objects(tmp_path / "b", ["chair"])
    with pytest.raises(ManifestError, match="duplicate uid 'chair'"):
        build_manifest(objects, shard_size=4)


@pytest.mark.parametrize("uid", ["../escape", "a/b", "..", "", "-flag", "x" * 300])
def test_unsafe_uids_are_rejected(tmp_path, uid):
    obj = make_objects(tmp_path, ["ok"])[0]
    with pytest.raises(ManifestError, match="not a safe name"):
        build_manifest([SourceObject(uid=uid, path=obj.path, root=obj.root)], shard_size=4)


def test_paths_escaping_the_root_are_rejected(tmp_path):
    outside = make_objects(tmp_path / "outside", ["secret"])[0].path
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link.obj")
    for path in (root / "link.obj", root / ".." / "outside" / "secret.obj"):
        with pytest.raises(ManifestError, match="outside the dataset root"):
            build_manifest([SourceObject(uid="x", path=path, root=root)], shard_size=4)


def test_run_manifest_on_a_folder_source(tmp_path):
    make_objects(tmp_path / "meshes" / "chairs", ["c1", "c2"])
    make_objects(tmp_path / "meshes" / "tables", ["t1"])
    (tmp_path / "meshes" / "notes.txt").write_text("not a mesh")
    dataset = {"source": {"kind": "folder", "path": str(tmp_path / "meshes"), "extensions": ["obj"],
                          "category": "parent_dir"}, "shard_size": 2}
    summary = run_manifest(dataset, tmp_path / "m.parquet", tmp_path / "f.parquet")
    assert summary == {"objects": 3, "shards": 2, "unavailable": 0}
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [(r["uid"], r["category"]) for r in rows] == [
        ("chairs__c1", "chairs"), ("chairs__c2", "chairs"), ("tables__t1", "tables")]
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 0
