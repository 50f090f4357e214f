"""The join's ledger and the per-stage accounting, on small hand-made shards of every stage."""
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ulip2_pipeline.caption.stage import CAPTIONS_SCHEMA
from ulip2_pipeline.failures import Failure, write_failures
from ulip2_pipeline.manifest import MANIFEST_SCHEMA
from ulip2_pipeline.points import POINTS_SCHEMA
from ulip2_pipeline.rank.stage import RANKED_SCHEMA
from ulip2_pipeline.render.stage import RENDER_SCHEMA
from ulip2_pipeline.triplets import dataset_summary, run_triplets_shard

N = 16


def _png():
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def write_shard(folder, objects, points, views, captioned, ranked, ledgers, manifest_failures=()):
    """``objects``: uids of the shard; the other arguments say which uids/views reach each stage."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = [{"uid": u, "source": f"/data/{u}.glb", "sha256": "0" * 64, "bytes": 1, "mtime_ns": 1,
                 "category": "thing", "shard": "00000"} for u in objects]
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), folder / "slice.parquet")
    pq.write_table(pa.table({"uid": ["x"], "source": ["s"], "sha256": ["0"], "bytes": [1], "mtime_ns": [1],
                             "category": [None], "shard": ["00000"]}, schema=MANIFEST_SCHEMA).slice(0, 0)
                   if not objects else pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA),
                   folder / "manifest.parquet")
    rng = np.random.default_rng(0)
    pq.write_table(pa.Table.from_pylist([{
        "uid": u, "category": "thing", "xyz": rng.normal(size=(N, 3)).astype(np.float32).tolist(),
        "rgb": np.full((N, 3), 9, np.uint8).tolist(), "colour_sources": ["none"], "center": [0.0, 0.0, 0.0],
        "scale": 1.0, "up_axis": "y", "num_faces": 2, "source_sha256": "0" * 64} for u in points],
        schema=POINTS_SCHEMA), folder / "points.parquet")
    png = _png()
    pq.write_table(pa.Table.from_pylist([{
        "uid": u, "category": "thing", "view": v, "azimuth_deg": 30.0 * v, "elevation_deg": 20.0, "distance": 3.0,
        "fov_deg": 40.0, "width": 8, "height": 8, "intrinsics": [1.0] * 9, "world_to_camera": [0.0] * 16, "png": png,
        "depth": None, "center": [0.0, 0.0, 0.0], "scale": 1.0, "normalisation_source": "points", "up_axis": "y",
        "missing_textures": 0} for u, v in views], schema=RENDER_SCHEMA), folder / "render.parquet")
    pq.write_table(pa.Table.from_pylist([{"uid": u, "view": v, "captions": ["a thing", "b"], "empty_captions": 0,
                                          "model": "m", "seed": 1} for u, v in captioned], schema=CAPTIONS_SCHEMA),
                   folder / "captions.parquet")
    pq.write_table(pa.Table.from_pylist([{"uid": u, "view": v, "captions": ["a thing", "b"], "scores": [0.3, 0.1],
                                          "top_k": [0], "kept": ["a thing"], "model": "m"} for u, v in ranked],
                                        schema=RANKED_SCHEMA), folder / "ranked.parquet")
    paths = {}
    for stage in ("points", "render", "caption", "rank"):
        paths[stage] = folder / f"failures_{stage}.parquet"
        write_failures([Failure(u, stage, "", reason, detail) for s, u, reason, detail in ledgers if s == stage],
                       paths[stage])
    write_failures([Failure(u, "manifest", "", reason, "gone") for u, reason in manifest_failures],
                   folder / "failures_manifest.parquet")
    return paths


def run(folder, ledgers):
    return run_triplets_shard(folder / "slice.parquet", folder / "points.parquet", folder / "render.parquet",
                              folder / "captions.parquet", folder / "ranked.parquet", ledgers, "00000",
                              {"dataset": "t"}, N, 4, folder / "triplets.parquet", folder / "left.parquet")


def test_every_object_that_leaves_has_a_row_where_it_left_and_the_counts_add_up(tmp_path):
    objects = ["a", "b", "c", "d", "e"]
    ledgers = write_shard(
        tmp_path, objects,
        points=["a", "c", "d", "e"],
        views=[("a", 0), ("a", 1), ("d", 0), ("e", 0), ("e", 1)],
        captioned=[("a", 0), ("a", 1), ("e", 0)],
        ranked=[("a", 0), ("a", 1), ("e", 0)],
        ledgers=[("points", "b", "unreadable", "ValueError: not a mesh\nmore"),
                 ("render", "c", "importer_error", "RuntimeError: bad file"),
                 ("render", "a", "missing_texture", "1 texture file not found"),
                 ("caption", "d", "corrupt_png", "view 0: cannot decode"),
                 ("caption", "e", "corrupt_png", "view 1: cannot decode")],
        manifest_failures=[("z", "download_failed")])
    summary = run(tmp_path, ledgers)
    assert summary == {"shard": "00000", "objects": 5, "triplets": 2, "left": 3}
    assert pq.read_table(tmp_path / "triplets.parquet").column("uid").to_pylist() == ["a", "e"]
    left = {r["uid"]: r for r in pq.read_table(tmp_path / "left.parquet").to_pylist()}
    assert {u: r["reason"] for u, r in left.items()} == {"b": "no_points", "c": "no_views", "d": "no_captions"}
    assert left["b"]["detail"] == "left at the points stage: unreadable: ValueError: not a mesh"
    assert left["c"]["source"] == "/data/c.glb" and left["c"]["stage"] == "triplets"

    report = dataset_summary(tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet",
                             [tmp_path / "triplets.parquet"])
    assert report["objects_in"] == 6 and report["triplets_out"] == 2 and report["objects_failed"] == 4
    assert report["adds_up"]
    assert report["failures"] == {"manifest": {"download_failed": 1}, "points": {"unreadable": 1},
                                  "render": {"importer_error": 1}, "caption": {"corrupt_png": 1}}
    # rendered with a fallback colour and one lost view: flags, not failures
    assert report["flags"] == {"render": {"missing_texture": 1}, "caption": {"corrupt_png": 1}}
    assert report["stages"]["render"] == {"in": 4, "out": 3, "failed": {"importer_error": 1},
                                          "flagged": {"missing_texture": 1}}


def test_an_object_that_left_without_a_ledger_row_is_counted_as_unrecorded(tmp_path):
    ledgers = write_shard(tmp_path, ["a", "b"], points=["a", "b"], views=[("a", 0)], captioned=[("a", 0)],
                          ranked=[("a", 0)], ledgers=[])
    run(tmp_path, ledgers)
    report = dataset_summary(tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet",
                             [tmp_path / "triplets.parquet"])
    assert report["failures"] == {"render": {"unrecorded": 1}} and report["adds_up"]


def test_a_shard_whose_objects_all_failed_earlier_joins_to_an_empty_valid_shard(tmp_path):
    ledgers = write_shard(tmp_path, ["a", "b"], points=[], views=[], captioned=[], ranked=[],
                          ledgers=[("points", "a", "unreadable", "x"), ("points", "b", "empty", "y")])
    assert run(tmp_path, ledgers)["triplets"] == 0
    table = pq.read_table(tmp_path / "triplets.parquet")
    assert table.num_rows == 0 and table.schema.field("xyz").type.list_size == N
    assert json.loads(table.schema.metadata[b"ulip2.accounting"])["stages"]["points"]["failed"] == {
        "empty": 1, "unreadable": 1}
    assert pq.read_table(tmp_path / "left.parquet").num_rows == 2


def test_a_shard_with_no_objects_at_all(tmp_path):
    ledgers = write_shard(tmp_path, [], points=[], views=[], captioned=[], ranked=[], ledgers=[])
    assert run(tmp_path, ledgers) == {"shard": "00000", "objects": 0, "triplets": 0, "left": 0}
    report = dataset_summary(tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet",
                             [tmp_path / "triplets.parquet"])
    assert report["objects_in"] == 0 and report["adds_up"]
