import hashlib
import os
import time

import pyarrow.parquet as pq
import pytest

from ulip2_pipeline import manifest as manifest_module
from ulip2_pipeline.manifest import (build_manifest, manifest_shards, read_shard, run_manifest, slice_path,
                                     write_manifest)
from ulip2_pipeline.sources import SourceObject
from ulip2_pipeline.sources.folder import folder_uid


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
    table, failures, _ = build_manifest(objects, shard_size=3)
    rows = table.to_pylist()
    assert failures == []
    for row in rows:
        data = open(row["source"], "rb").read()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["bytes"] == len(data)
    assert [r["shard"] for r in rows] == ["00000"] * 3 + ["00001"] * 3 + ["00002"]
    write_manifest(table, tmp_path / "manifest.parquet")
    assert manifest_shards(tmp_path / "manifest.parquet") == ["00000", "00001", "00002"]
    assert [r["uid"] for r in read_shard(tmp_path / "manifest.parquet", "00001")] == ["obj3", "obj4", "obj5"]


def test_objects_that_cannot_be_admitted_are_ledger_rows_not_a_stopped_dataset(tmp_path):
    good = make_objects(tmp_path / "a", ["chair", "ok"])
    twin = make_objects(tmp_path / "b", ["chair"])
    outside = make_objects(tmp_path / "outside", ["secret"])[0].path
    os.symlink(outside, tmp_path / "a" / "link.obj")
    bad = [SourceObject(uid=uid, path=good[1].path, root=good[1].root)
           for uid in ["../escape", "a/b", "..", "", "-flag", "x" * 300]]
    escaping = [SourceObject(uid="link", path=tmp_path / "a" / "link.obj", root=tmp_path / "a"),
                SourceObject(uid="dots", path=tmp_path / "a" / ".." / "outside" / "secret.obj", root=tmp_path / "a")]
    table, failures, _ = build_manifest(good + twin + bad + escaping, shard_size=4)
    assert sorted(table.column("uid").to_pylist()) == ["chair", "ok"]
    reasons = {(f.uid, f.reason) for f in failures}
    assert ("chair", "duplicate_uid") in reasons
    assert {("link", "outside_root"), ("dots", "outside_root")} <= reasons
    assert sum(1 for f in failures if f.reason == "unsafe_uid") == 6
    assert all(f.stage == "manifest" and f.detail for f in failures)


def test_folder_uids_tell_same_stem_files_apart_and_map_unsafe_names(tmp_path):
    names = ["duck.obj", "duck.dae", "my duck.obj", "my_duck.obj", "a__b.obj", ".hidden.obj", "ünï.obj",
             "x" * 250 + ".obj"]
    uids = [folder_uid((name,)) for name in names]
    assert uids[:2] == ["duck.obj", "duck.dae"] and uids[3] == "my_duck.obj"
    assert len(set(uids)) == len(uids)
    assert all(manifest_module.UID_PATTERN.match(u) and ".." not in u for u in uids)
    assert folder_uid(("racecar", "meshes", "cone.dae")) == "racecar__meshes__cone.dae"
    # '__' in a name, or a '_' next to a separator, would make different paths collide: such names are hashed
    assert folder_uid(("a", "b.obj")) != folder_uid(("a__b.obj",))
    assert folder_uid(("a_", "b.obj")) != folder_uid(("a", "_b.obj"))
    assert folder_uid(("my duck.obj",)) == uids[2]  # stable


def _folder(tmp_path, files):
    root = tmp_path / "meshes"
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    return {"kind": "folder", "path": str(root), "extensions": ["obj", "dae"], "category": "parent_dir"}


def test_run_manifest_on_a_folder_with_same_stem_files(tmp_path):
    source = _folder(tmp_path, {"chairs/c1.obj": "v 0 0 0\n", "chairs/c1.dae": "<x/>", "tables/t 1.obj": "v 1 0 0\n",
                                "notes.txt": "not a mesh"})
    summary = run_manifest(source, 2, tmp_path / "m.parquet", tmp_path / "f.parquet")
    assert summary["objects"] == 3 and summary["shards"] == 2 and summary["unavailable"] == 0
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [(r["uid"][:14], r["category"]) for r in rows] == [
        ("chairs__c1.dae", "chairs"), ("chairs__c1.obj", "chairs"), ("tables__t_1.ob", "tables")]
    for shard in manifest_shards(tmp_path / "m.parquet"):
        assert pq.read_table(slice_path(tmp_path / "m.parquet", shard)).column("shard").unique().to_pylist() == [shard]
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 0


class Rescans:
    """A folder source rescanned like the manifest rule does, with the slices' modification times."""

    def __init__(self, tmp_path, count=9, shard_size=3):
        self.root = tmp_path / "meshes"
        self.out, self.failures = tmp_path / "manifest.parquet", tmp_path / "failures.parquet"
        self.shard_size = shard_size
        for i in range(count):
            self.write(f"obj{i:02d}.obj", i)

    def write(self, name, i):
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_text(f"v {i} 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")

    def run(self):
        source = {"kind": "folder", "path": str(self.root), "extensions": ["obj"], "category": "none"}
        return run_manifest(source, self.shard_size, self.out, self.failures)

    def slice_times(self):
        return {s: slice_path(self.out, s).stat().st_mtime_ns for s in manifest_shards(self.out)}

    def shards(self):
        return {r["uid"]: r["shard"] for r in pq.read_table(self.out).to_pylist()}


def test_a_new_object_fills_a_new_shard_and_no_other_slice_is_touched(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    before, times = scan.shards(), scan.slice_times()
    time.sleep(0.01)
    scan.write("aaa_first_in_uid_order.obj", 99)
    summary = scan.run()
    after = scan.shards()
    assert {u: after[u] for u in before} == before  # nobody moved, although the new uid sorts first
    assert after["aaa_first_in_uid_order.obj"] == "00003"
    assert summary["slices_written"] == 1 and summary["slices_unchanged"] == 3 and summary["new_objects"] == 1
    assert {s: t for s, t in scan.slice_times().items() if s in times} == times


def test_a_changed_or_removed_object_rewrites_only_its_own_slice(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    times = scan.slice_times()
    time.sleep(0.01)
    scan.write("obj04.obj", 1234)          # shard 00001
    (scan.root / "obj07.obj").unlink()     # shard 00002
    summary = scan.run()
    now = scan.slice_times()
    assert [s for s in times if now[s] != times[s]] == ["00001", "00002"]
    assert summary["removed_objects"] == 1 and summary["slices_written"] == 2
    (scan.root / "obj00.obj").unlink(), (scan.root / "obj01.obj").unlink(), (scan.root / "obj02.obj").unlink()
    summary = scan.run()
    assert "00000" not in manifest_shards(scan.out) and not slice_path(scan.out, "00000").exists()
    assert summary["slices_removed"] == 1
    scan.write("new.obj", 5)
    scan.run()
    assert scan.shards()["new.obj"] == "00003"  # a shard number is never reused


def test_unchanged_files_are_not_hashed_again(tmp_path, monkeypatch):
    scan = Rescans(tmp_path)
    scan.run()
    hashed = []
    real = manifest_module.file_sha256
    monkeypatch.setattr(manifest_module, "file_sha256", lambda p: hashed.append(p) or real(p))
    summary = scan.run()
    assert hashed == [] and summary["hash_reused"] == 9
    os.utime(scan.root / "obj03.obj", ns=(1, 1))  # same bytes, other modification time: hashed, same digest
    times = scan.slice_times()
    summary = scan.run()
    assert [os.path.basename(p) for p in hashed] == ["obj03.obj"]
    assert summary["slices_written"] == 0 and scan.slice_times() == times  # a touched file reruns nothing


def test_moving_the_files_keeps_the_slices_modification_times(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    times = scan.slice_times()
    scan.root = scan.root.rename(tmp_path / "moved")
    summary = scan.run()
    assert summary["slices_moved"] == 3 and summary["slices_written"] == 0
    assert scan.slice_times() == times
    assert all(r["source"].startswith(str(scan.root)) for r in read_shard(slice_path(scan.out, "00000"), "00000"))


def test_changing_the_shard_size_keeps_existing_shards(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    before = scan.shards()
    scan.shard_size = 100
    scan.write("late.obj", 50)
    scan.run()
    after = scan.shards()
    assert {u: after[u] for u in before} == before and after["late.obj"] == "00003"


def test_distinct_paths_never_share_a_folder_uid():
    import itertools

    # every path of up to two names over an alphabet that exercises separators, dots and unsafe characters
    names = ["".join(c) for n in (1, 2, 3) for c in itertools.product("a_. ", repeat=n)]
    names = [n + ".obj" for n in names] + names
    paths = [(n,) for n in names if n.endswith(".obj")] + [(d, n) for d in names for n in names if n.endswith(".obj")]
    uids = {}
    for parts in paths:
        uid = folder_uid(parts)
        assert manifest_module.UID_PATTERN.match(uid) and ".." not in uid, (parts, uid)
        assert uids.setdefault(uid, parts) == parts, (parts, uids[uid], uid)
