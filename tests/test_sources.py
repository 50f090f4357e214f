import gzip
import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest
import trimesh
from conftest import source_settings

from ulip2_pipeline.sources import SourceError, list_objects
from ulip2_pipeline.sources.demo import CLASSES, generate_demo_set


def box_bytes():
    return trimesh.Scene(trimesh.creation.box()).export(file_type="glb")


def test_shapenet_tree_takes_the_category_from_the_synset(tmp_path):
    for synset, model in [("03001627", "abc"), ("04379243", "def"), ("04379243", "ghi")]:
        mesh_dir = tmp_path / synset / model / "models"
        mesh_dir.mkdir(parents=True)
        trimesh.creation.box().export(mesh_dir / "model_normalized.obj")
    (tmp_path / "04379243" / "broken_model").mkdir()  # no mesh inside: skipped
    objects, missing = list_objects(source_settings(kind="shapenet", path=str(tmp_path), synsets=[]))
    assert missing == []
    assert [(o.uid, o.category) for o in objects] == [
        ("03001627_abc", "chair"),
        ("04379243_def", "table"),
        ("04379243_ghi", "table"),
    ]
    only_chairs, _ = list_objects(source_settings(kind="shapenet", path=str(tmp_path), synsets=["03001627"]))
    assert [o.uid for o in only_chairs] == ["03001627_abc"]


def test_shapenet_taxonomy_file_wins(tmp_path):
    (tmp_path / "03001627" / "m" / "models").mkdir(parents=True)
    trimesh.creation.box().export(tmp_path / "03001627" / "m" / "models" / "model_normalized.obj")
    (tmp_path / "taxonomy.json").write_text(json.dumps([{"synsetId": "03001627", "name": "seat,chair"}]))
    objects, _ = list_objects(source_settings(kind="shapenet", path=str(tmp_path), synsets=[]))
    assert objects[0].category == "seat"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list_objects(source_settings(kind="folder", path=str(tmp_path / "nope"), extensions=["obj"], category="none"))


def objaverse_index(cache, uids):
    paths = {uid: f"glbs/000-{i:03d}/{uid}.glb" for i, uid in enumerate(uids)}
    cache.mkdir(parents=True, exist_ok=True)
    with gzip.open(cache / "object-paths.json.gz", "wt") as f:
        json.dump(paths, f)
    return paths


def objaverse_source(cache, uids, **extra):
    return {
        "kind": "objaverse",
        "uids": uids,
        "uids_file": None,
        "cache_dir": str(cache),
        "download_processes": 1,
        "categories": "none",
        **extra,
    }


def test_objaverse_from_a_prefilled_cache(tmp_path):
    cache = tmp_path / "hf-objaverse-v1"
    paths = objaverse_index(cache, ["aaa", "bbb"])
    for uid, rel in paths.items():
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        (cache / rel).write_bytes(box_bytes())
    objects, missing = list_objects(source_settings(**objaverse_source(cache, ["aaa", "bbb", "zzz"])))
    assert [o.uid for o in objects] == ["aaa", "bbb"]
    assert all(o.path.is_relative_to(cache) for o in objects)
    assert missing == [("zzz", "unknown_uid", "not in Objaverse's object-paths index")]


def test_objaverse_downloads_through_the_package(tmp_path, monkeypatch):
    import objaverse

    cache = tmp_path / "hf-objaverse-v1"
    objaverse_index(cache, ["aaa", "bbb"])
    lvis = cache / "lvis-annotations.json.gz"
    with gzip.open(lvis, "wt") as f:
        json.dump({"mug": ["aaa"]}, f)
    fetched = []

    def fake_urlretrieve(url, filename):  # only the network call is replaced
        fetched.append(url)
        if url.endswith("bbb.glb"):
            raise OSError("HTTP Error 503")
        open(filename, "wb").write(box_bytes())

    monkeypatch.setattr(objaverse.urllib.request, "urlretrieve", fake_urlretrieve)
    objects, missing = list_objects(source_settings(**objaverse_source(cache, ["aaa", "bbb"], categories="lvis")))
    assert [(o.uid, o.category) for o in objects] == [("aaa", "mug")]
    assert [(m[0], m[1]) for m in missing] == [("bbb", "download_failed")]
    assert any(u.endswith("/aaa.glb") for u in fetched)
    assert (cache / "glbs" / "000-000" / "aaa.glb").exists()


def test_demo_set_is_deterministic_and_labelled(tmp_path):
    a = generate_demo_set(tmp_path / "a", objects_per_class=4, broken_objects=1)
    b = generate_demo_set(tmp_path / "b", objects_per_class=4, broken_objects=1)
    digest = lambda files: [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]  # noqa: E731
    assert digest(a) == digest(b)
    objects, _ = list_objects(source_settings(kind="demo"), demo_dir=tmp_path / "a")
    categories = {o.category for o in objects}
    assert categories == set(CLASSES) | {None}
    suffixes = {p.suffix for p in a}
    assert {".glb", ".ply", ".obj", ".stl"} <= suffixes


def test_demo_set_has_every_kind_of_appearance(tmp_path):
    from ulip2_pipeline.stages.points.meshes import load_parts

    files = generate_demo_set(tmp_path / "d", objects_per_class=4, broken_objects=0)
    sources, multi_part = set(), 0
    for path in files:
        parts = load_parts(path, max_faces=10**6)
        sources |= {p.colour_source for p in parts}
        multi_part += len(parts) > 1
    assert {"texture", "vertex", "material", "none"} <= sources
    assert multi_part >= 3 * 4


def test_a_file_name_that_is_not_utf8_is_a_ledger_row_and_the_others_are_listed(tmp_path):
    """One such name used to stop the whole manifest: its path cannot be stored in a Parquet string."""
    from ulip2_pipeline.stages.manifest import run_manifest

    root = tmp_path / "meshes"
    root.mkdir()
    (root / "plain.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.obj"), "w") as f:
        f.write("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    source = {"kind": "folder", "path": str(root), "extensions": ["obj"], "category": "none"}
    summary = run_manifest(source_settings(**source), 10, tmp_path / "manifest.parquet", tmp_path / "failures.parquet")
    assert summary["objects"] == 1
    assert pq.read_table(tmp_path / "manifest.parquet").column("uid").to_pylist() == ["plain.obj"]
    [failure] = pq.read_table(tmp_path / "failures.parquet").to_pylist()
    assert failure["reason"] == "non_utf8_name"
    assert failure["uid"].startswith("caf_.obj-")
    assert "caf\\xe9.obj" in failure["detail"]
    assert "rename" in failure["detail"]
