import hashlib
import os
import time

import pyarrow.parquet as pq
import pytest
from conftest import source_settings

from ulip2_pipeline.sources import SourceObject
from ulip2_pipeline.sources.folder import folder_uid
from ulip2_pipeline.stages import manifest as manifest_module
from ulip2_pipeline.stages.manifest import (
    build_manifest,
    manifest_shards,
    read_shard,
    run_manifest,
    slice_path,
    write_manifest,
)


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
    bad = [
        SourceObject(uid=uid, path=good[1].path, root=good[1].root)
        for uid in ["../escape", "a/b", "..", "", "-flag", "x" * 300]
    ]
    escaping = [
        SourceObject(uid="link", path=tmp_path / "a" / "link.obj", root=tmp_path / "a"),
        SourceObject(uid="dots", path=tmp_path / "a" / ".." / "outside" / "secret.obj", root=tmp_path / "a"),
    ]
    table, failures, _ = build_manifest(good + twin + bad + escaping, shard_size=4)
    assert sorted(table.column("uid").to_pylist()) == ["chair", "ok"]
    reasons = {(f.uid, f.reason) for f in failures}
    assert ("chair", "duplicate_uid") in reasons
    assert {("link", "outside_root"), ("dots", "outside_root")} <= reasons
    assert sum(1 for f in failures if f.reason == "unsafe_uid") == 6
    assert all(f.stage == "manifest" and f.detail for f in failures)


def test_folder_uids_tell_same_stem_files_apart_and_map_unsafe_names(tmp_path):
    names = [
        "duck.obj",
        "duck.dae",
        "my duck.obj",
        "my_duck.obj",
        "a__b.obj",
        ".hidden.obj",
        "ünï.obj",
        "x" * 250 + ".obj",
    ]
    uids = [folder_uid((name,)) for name in names]
    assert uids[:2] == ["duck.obj", "duck.dae"]
    assert uids[3] == "my_duck.obj"
    assert len(set(uids)) == len(uids)
    assert all(manifest_module.UID_PATTERN.fullmatch(u) and ".." not in u for u in uids)
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
    source = _folder(
        tmp_path,
        {
            "chairs/c1.obj": "v 0 0 0\n",
            "chairs/c1.dae": "<x/>",
            "tables/t 1.obj": "v 1 0 0\n",
            "notes.txt": "not a mesh",
        },
    )
    summary = run_manifest(source_settings(**source), 2, tmp_path / "m.parquet", tmp_path / "f.parquet")
    assert summary["objects"] == 3
    assert summary["shards"] == 2
    assert summary["unavailable"] == 0
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [(r["uid"][:14], r["category"]) for r in rows] == [
        ("chairs__c1.dae", "chairs"),
        ("chairs__c1.obj", "chairs"),
        ("tables__t_1.ob", "tables"),
    ]
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
        return run_manifest(source_settings(**source), self.shard_size, self.out, self.failures)

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
    assert summary["slices_written"] == 1
    assert summary["slices_unchanged"] == 3
    assert summary["new_objects"] == 1
    assert {s: t for s, t in scan.slice_times().items() if s in times} == times


def test_a_changed_or_removed_object_rewrites_only_its_own_slice(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    times = scan.slice_times()
    time.sleep(0.01)
    scan.write("obj04.obj", 1234)  # shard 00001
    (scan.root / "obj07.obj").unlink()  # shard 00002
    summary = scan.run()
    now = scan.slice_times()
    assert [s for s in times if now[s] != times[s]] == ["00001", "00002"]
    assert summary["removed_objects"] == 1
    assert summary["slices_written"] == 2
    (scan.root / "obj00.obj").unlink(), (scan.root / "obj01.obj").unlink(), (scan.root / "obj02.obj").unlink()
    summary = scan.run()
    assert "00000" not in manifest_shards(scan.out)
    assert not slice_path(scan.out, "00000").exists()
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
    assert hashed == []
    assert summary["hash_reused"] == 9
    os.utime(scan.root / "obj03.obj", ns=(1, 1))  # same bytes, other modification time: hashed, same digest
    times = scan.slice_times()
    summary = scan.run()
    assert [os.path.basename(p) for p in hashed] == ["obj03.obj"]
    assert summary["slices_written"] == 0
    assert scan.slice_times() == times


def test_moving_the_files_keeps_the_slices_modification_times(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    times = scan.slice_times()
    scan.root = scan.root.rename(tmp_path / "moved")
    summary = scan.run()
    assert summary["slices_moved"] == 3
    assert summary["slices_written"] == 0
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
    assert {u: after[u] for u in before} == before
    assert after["late.obj"] == "00003"


def test_distinct_paths_never_share_a_folder_uid():
    import itertools

    # every path of up to two names over an alphabet that exercises separators, dots and unsafe characters
    names = ["".join(c) for n in (1, 2, 3) for c in itertools.product("a_. ", repeat=n)]
    names = [n + ".obj" for n in names] + names
    paths = [(n,) for n in names if n.endswith(".obj")] + [(d, n) for d in names for n in names if n.endswith(".obj")]
    uids = {}
    for parts in paths:
        uid = folder_uid(parts)
        assert manifest_module.UID_PATTERN.fullmatch(uid), (parts, uid)
        assert ".." not in uid, (parts, uid)
        assert uids.setdefault(uid, parts) == parts, (parts, uids[uid], uid)


def test_admission_reasons_name_the_object_and_the_rule_it_broke(tmp_path):
    good = make_objects(tmp_path / "a", ["chair"])
    twin = make_objects(tmp_path / "b", ["chair"])
    outside = make_objects(tmp_path / "outside", ["secret"])[0]
    dotted = SourceObject(uid="a..b", path=good[0].path, root=good[0].root)
    escaping = SourceObject(uid="escaping", path=outside.path, root=tmp_path / "a")
    _, failures, _ = build_manifest(good + twin + [dotted, escaping], shard_size=4)
    by_uid = {f.uid: f for f in failures}
    assert by_uid["a..b"].reason == "unsafe_uid"
    assert "'a..b'" in by_uid["a..b"].detail
    assert "only letters, digits, '.', '_' and '-'" in by_uid["a..b"].detail
    assert "must not contain '..', and have at most 200 characters" in by_uid["a..b"].detail
    assert by_uid["a..b"].detail.endswith("200 characters")
    assert by_uid["a..b"].source == str(good[0].path)
    assert by_uid["escaping"].reason == "outside_root"
    assert str(outside.path) in by_uid["escaping"].detail
    assert str(tmp_path / "a") in by_uid["escaping"].detail
    assert by_uid["chair"].reason == "duplicate_uid"
    assert by_uid["chair"].source == str(twin[0].path)
    assert str(good[0].path) in by_uid["chair"].detail  # the one that was admitted


@pytest.mark.parametrize("uid", ["chair\n", "chair\nrm", "", "_chair", "x" * 201])
def test_a_uid_that_is_not_a_whole_safe_name_is_refused(tmp_path, uid):
    """A trailing newline too: ``$`` alone would match before it."""
    good = make_objects(tmp_path / "a", ["chair"])
    unsafe = SourceObject(uid=uid, path=good[0].path, root=good[0].root)
    _, failures, _ = build_manifest([unsafe], shard_size=4)
    assert [f.reason for f in failures] == ["unsafe_uid"]


def test_a_source_that_checked_its_objects_is_trusted_but_duplicates_are_still_refused(tmp_path):
    """Sources that already made uids safe and kept files inside the root (``checked``) skip those checks."""
    outside = make_objects(tmp_path / "outside", ["secret"])[0]
    trusted = SourceObject(uid="x" * 300, path=outside.path, root=tmp_path / "a", checked=True)
    twin = SourceObject(uid="x" * 300, path=outside.path, root=tmp_path / "a", checked=True)
    table, failures, _ = build_manifest([trusted, twin], shard_size=4)
    assert table.column("uid").to_pylist() == ["x" * 300]
    assert [f.reason for f in failures] == ["duplicate_uid"]


def test_an_unreadable_file_is_a_ledger_row_and_the_others_are_hashed(tmp_path):
    objects = make_objects(tmp_path / "meshes", ["a", "b", "c"])
    objects[1].path.unlink()  # listed without size: the stat fails
    vanished = make_objects(tmp_path / "meshes", ["d"])[0]
    stat = vanished.path.stat()
    listed = SourceObject(
        uid="d", path=vanished.path, root=vanished.root, bytes=stat.st_size, mtime_ns=stat.st_mtime_ns
    )
    vanished.path.unlink()  # listed with its size and time, gone before it is hashed
    table, failures, figures = build_manifest(objects + [listed], shard_size=4)
    assert table.column("uid").to_pylist() == ["a", "c"]
    assert [(f.uid, f.stage, f.reason) for f in failures] == [
        ("b", "manifest", "unreadable_file"),
        ("d", "manifest", "unreadable_file"),
    ]
    assert [f.source for f in failures] == [str(objects[1].path), str(vanished.path)]
    assert all(f.detail.startswith("FileNotFoundError: ") for f in failures)
    assert figures["objects"] == 2


def test_a_listed_size_and_time_are_used_without_a_stat(tmp_path):
    obj = make_objects(tmp_path / "meshes", ["a"])[0]
    listed = SourceObject(uid="a", path=obj.path, root=obj.root, bytes=12345, mtime_ns=678)
    row = build_manifest([listed], shard_size=4)[0].to_pylist()[0]
    assert (row["bytes"], row["mtime_ns"]) == (12345, 678)
    assert row["sha256"] == hashlib.sha256(obj.path.read_bytes()).hexdigest()


@pytest.mark.parametrize("changed", ["source", "bytes", "mtime_ns"])
def test_a_previous_hash_is_reused_only_if_path_size_and_time_all_match(tmp_path, changed):
    obj = make_objects(tmp_path / "meshes", ["a"])[0]
    stat = obj.path.stat()
    known = {"source": str(obj.path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stale = "0" * 64
    previous = {"a": (known["source"], known["bytes"], known["mtime_ns"], stale, "00000")}
    table, _, figures = build_manifest([obj], 4, previous, 1)
    assert table.column("sha256").to_pylist() == [stale]
    assert figures["hashed"] == 0
    known[changed] = "elsewhere.obj" if changed == "source" else known[changed] + 1
    previous = {"a": (known["source"], known["bytes"], known["mtime_ns"], stale, "00000")}
    table, _, figures = build_manifest([obj], 4, previous, 1)
    assert table.column("sha256").to_pylist() == [hashlib.sha256(obj.path.read_bytes()).hexdigest()]
    assert figures["hashed"] == 1
    assert figures["hash_reused"] == 0
    assert table.column("shard").to_pylist() == ["00000"]


def test_a_manifest_of_schema_1_without_modification_times_is_rescanned_with_its_shards_kept(tmp_path):
    scan = Rescans(tmp_path)
    scan.run()
    before = scan.shards()
    old = pq.read_table(scan.out)
    write_manifest(old.drop_columns(["mtime_ns"]), scan.out, {"ulip2.schema_version": "1"})
    summary = scan.run()
    assert summary["hashed"] == 9
    assert summary["hash_reused"] == 0
    assert scan.shards() == before
    assert pq.read_table(scan.out).column("mtime_ns").null_count == 0


def _foreign():
    import pyarrow as pa

    return pa.table(
        {"uid": ["zzz"], "source": ["x"], "bytes": [1], "mtime_ns": [1], "sha256": ["0" * 64], "shard": ["00007"]}
    )


def test_not_a_manifest_is_a_clear_error(tmp_path):
    pq.write_table(_foreign(), tmp_path / "other.parquet")
    with pytest.raises(manifest_module.ManifestError, match="not a ulip2 manifest") as raised:
        manifest_shards(tmp_path / "other.parquet")
    assert str(tmp_path / "other.parquet") in str(raised.value)


def test_each_shard_slice_holds_exactly_its_own_rows():
    import pyarrow as pa

    table = pa.table({"uid": ["a", "b", "c", "d"], "shard": ["00000", "00001", "00001", "00002"]})
    slices = manifest_module.shard_slices(table)
    assert {s: t.column("uid").to_pylist() for s, t in slices.items()} == {
        "00000": ["a"],
        "00001": ["b", "c"],
        "00002": ["d"],
    }
    single = manifest_module.shard_slices(table.slice(0, 1))
    assert {s: t.column("uid").to_pylist() for s, t in single.items()} == {"00000": ["a"]}


def test_the_manifest_slices_and_ledger_record_their_schema_shard_and_settings(tmp_path):
    from ulip2_pipeline.config import config_hash

    source = _folder(tmp_path, {"a.obj": "v 0 0 0\n", "b.obj": "v 1 0 0\n"})
    out = tmp_path / "results" / "demo" / "manifest.parquet"  # neither folder exists yet
    run_manifest(source_settings(**source), 1, out, tmp_path / "f.parquet")
    metadata = pq.read_schema(out).metadata
    assert metadata[b"ulip2.schema_version"] == b"2"
    assert metadata[b"ulip2.shard_size"] == b"1"
    assert metadata[b"ulip2.config_hash"] == config_hash([source, 1]).encode()
    assert metadata[b"ulip2.config_hash"] != config_hash([source, 2]).encode()
    for shard in ("00000", "00001"):
        sliced = pq.read_schema(slice_path(out, shard)).metadata
        assert sliced[b"ulip2.schema_version"] == b"2"
        assert sliced[b"ulip2.shard"] == shard.encode()
    assert pq.read_schema(tmp_path / "f.parquet").metadata[b"ulip2.stage"] == b"manifest"


def test_a_slice_written_without_an_objects_digest_is_rewritten(tmp_path):
    """Slices of an older version carry a content digest but no objects digest: they are replaced, not trusted."""
    from ulip2_pipeline.atomic import write_parquet

    scan = Rescans(tmp_path)
    scan.run()
    older = pq.read_table(slice_path(scan.out, "00001")).replace_schema_metadata(None)
    write_parquet(older, slice_path(scan.out, "00001"))
    assert manifest_module.OBJECTS_KEY.encode() not in pq.read_schema(slice_path(scan.out, "00001")).metadata
    summary = scan.run()
    assert summary["slices_written"] == 1
    assert summary["slices_unchanged"] == 2
    assert manifest_module.OBJECTS_KEY.encode() in pq.read_schema(slice_path(scan.out, "00001")).metadata


def test_a_manifest_without_a_stored_next_shard_continues_after_its_highest_shard(tmp_path):
    """Manifests written before ``ulip2.next_shard`` existed: new objects start after the highest shard."""
    scan = Rescans(tmp_path)
    scan.run()
    metadata = {k: v for k, v in pq.read_schema(scan.out).metadata.items() if k != b"ulip2.next_shard"}
    pq.write_table(pq.read_table(scan.out).replace_schema_metadata(metadata), scan.out)
    scan.write("late.obj", 50)
    summary = scan.run()
    assert scan.shards()["late.obj"] == "00003"
    assert summary["next_shard"] == 4


def test_the_demo_source_is_listed_from_the_generated_folder(tmp_path):
    demo = tmp_path / "demo_meshes"
    (demo / "cube").mkdir(parents=True)
    (demo / "cube" / "cube_000.obj").write_text("v 0 0 0\n")
    summary = run_manifest(
        source_settings(kind="demo"), 4, tmp_path / "m.parquet", tmp_path / "f.parquet", demo_dir=demo
    )
    assert summary["objects"] == 1
    assert pq.read_table(tmp_path / "m.parquet").column("category").to_pylist() == ["cube"]


def test_objects_the_source_could_not_list_are_ledger_rows_and_warnings(tmp_path, caplog):
    source = _folder(tmp_path, {"a.obj": "v 0 0 0\n"})
    (tmp_path / "secret.obj").write_text("v 1 0 0\n")
    os.symlink(tmp_path / "secret.obj", tmp_path / "meshes" / "link.obj")
    with caplog.at_level("WARNING", logger="ulip2_pipeline.stages.manifest"):
        summary = run_manifest(source_settings(**source), 4, tmp_path / "m.parquet", tmp_path / "f.parquet")
    assert summary["objects"] == 1
    assert summary["unavailable"] == 1
    [row] = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert (row["uid"], row["stage"], row["source"], row["reason"]) == ("link.obj", "manifest", "", "outside_root")
    assert "outside the dataset root" in row["detail"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"link.obj: outside_root: {row['detail']}"]


def test_the_summary_times_listing_and_the_whole_run_in_seconds(tmp_path, monkeypatch):
    from types import SimpleNamespace

    clock = iter([100.0, 101.234, 103.456])
    monkeypatch.setattr(manifest_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    source = _folder(tmp_path, {"a.obj": "v 0 0 0\n"})
    summary = run_manifest(source_settings(**source), 4, tmp_path / "m.parquet", tmp_path / "f.parquet")
    assert summary["list_s"] == 1.23
    assert summary["seconds"] == 3.46


def test_the_log_gives_the_summary_and_names_the_shards_whose_jobs_rerun(tmp_path, caplog):
    """At most 50 shard names are listed; ' ...' says that there were more."""
    import json

    scan = Rescans(tmp_path, count=50, shard_size=1)
    with caplog.at_level("INFO", logger="ulip2_pipeline.stages.manifest"):
        summary = scan.run()
    messages = [r.getMessage() for r in caplog.records]
    first_fifty = ", ".join(f"{i:05d}" for i in range(50))
    assert f"manifest: {json.dumps(summary)}" in messages
    assert f"shards whose objects changed (their jobs rerun): {first_fifty}" in messages
    for i in range(50):
        scan.write(f"obj{i:02d}.obj", 1000 + i)
    scan.write("zz_new.obj", 7)
    caplog.clear()
    with caplog.at_level("INFO", logger="ulip2_pipeline.stages.manifest"):
        scan.run()
    rerun = [m for m in (r.getMessage() for r in caplog.records) if m.startswith("shards whose")]
    assert rerun == [f"shards whose objects changed (their jobs rerun): {first_fifty} ..."]
    caplog.clear()
    with caplog.at_level("INFO", logger="ulip2_pipeline.stages.manifest"):
        scan.run()
    assert not [r for r in caplog.records if r.getMessage().startswith("shards whose")]
