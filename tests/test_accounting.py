"""The join's ledger and the per-stage accounting, on small hand-made shards of every stage."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ulip2_pipeline.accounting import CHAIN, account_shard, merge_accounts
from ulip2_pipeline.failures import Failure, write_failures
from ulip2_pipeline.quality.flags import OBJECT_FLAGS, VIEW_FLAGS
from ulip2_pipeline.settings import TripletsSettings
from ulip2_pipeline.stages import triplets as triplets_stage
from ulip2_pipeline.stages.caption import CAPTIONS_SCHEMA
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA
from ulip2_pipeline.stages.points.stage import POINTS_SCHEMA
from ulip2_pipeline.stages.rank import RANKED_SCHEMA
from ulip2_pipeline.stages.render.stage import RENDER_SCHEMA
from ulip2_pipeline.stages.triplets import dataset_summary

N = 16


def _png():
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def write_shard(folder, objects, points, views, captioned, ranked, ledgers, manifest_failures=()):
    """``objects``: uids of the shard; the other arguments say which uids/views reach each stage."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = [
        {
            "uid": u,
            "source": f"/data/{u}.glb",
            "sha256": "0" * 64,
            "bytes": 1,
            "mtime_ns": 1,
            "category": "thing",
            "shard": "00000",
        }
        for u in objects
    ]
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), folder / "slice.parquet")
    pq.write_table(
        pa.table(
            {
                "uid": ["x"],
                "source": ["s"],
                "sha256": ["0"],
                "bytes": [1],
                "mtime_ns": [1],
                "category": [None],
                "shard": ["00000"],
            },
            schema=MANIFEST_SCHEMA,
        ).slice(0, 0)
        if not objects
        else pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA),
        folder / "manifest.parquet",
    )
    rng = np.random.default_rng(0)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "uid": u,
                    "category": "thing",
                    "xyz": rng.normal(size=(N, 3)).astype(np.float32).tolist(),
                    "rgb": np.full((N, 3), 9, np.uint8).tolist(),
                    "colour_sources": ["none"],
                    "center": [0.0, 0.0, 0.0],
                    "scale": 1.0,
                    "up_axis": "y",
                    "num_faces": 2,
                    "source_sha256": "0" * 64,
                }
                for u in points
            ],
            schema=POINTS_SCHEMA,
        ),
        folder / "points.parquet",
    )
    png = _png()
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "uid": u,
                    "category": "thing",
                    "view": v,
                    "azimuth_deg": 30.0 * v,
                    "elevation_deg": 20.0,
                    "distance": 3.0,
                    "fov_deg": 40.0,
                    "width": 8,
                    "height": 8,
                    "intrinsics": [1.0] * 9,
                    "world_to_camera": [0.0] * 16,
                    "png": png,
                    "depth": None,
                    "center": [0.0, 0.0, 0.0],
                    "scale": 1.0,
                    "normalisation_source": "points",
                    "up_axis": "y",
                    "missing_textures": 0,
                }
                for u, v in views
            ],
            schema=RENDER_SCHEMA,
        ),
        folder / "render.parquet",
    )
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"uid": u, "view": v, "captions": ["a thing", "b"], "empty_captions": 0, "model": "m", "seed": 1}
                for u, v in captioned
            ],
            schema=CAPTIONS_SCHEMA,
        ),
        folder / "captions.parquet",
    )
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "uid": u,
                    "view": v,
                    "captions": ["a thing", "b"],
                    "scores": [0.3, 0.1],
                    "top_k": [0],
                    "kept": ["a thing"],
                    "model": "m",
                }
                for u, v in ranked
            ],
            schema=RANKED_SCHEMA,
        ),
        folder / "ranked.parquet",
    )
    paths = {}
    for stage in ("points", "render", "caption", "rank"):
        paths[stage] = folder / f"failures_{stage}.parquet"
        write_failures(
            [Failure(u, stage, "", reason, detail) for s, u, reason, detail in ledgers if s == stage], paths[stage]
        )
    write_failures(
        [Failure(u, "manifest", "", reason, "gone") for u, reason in manifest_failures],
        folder / "failures_manifest.parquet",
    )
    return paths


def run(folder, ledgers, out=None):
    return triplets_stage.run_shard(
        triplets_stage.Inputs(
            folder / "slice.parquet",
            folder / "points.parquet",
            folder / "render.parquet",
            folder / "captions.parquet",
            folder / "ranked.parquet",
            **{f"{stage}_failures": path for stage, path in ledgers.items()},
            shard="00000",
        ),
        TripletsSettings(row_group_rows=4),
        triplets_stage.Outputs(out or folder / "triplets.parquet", folder / "left.parquet"),
        points=N,
        provenance={"dataset": "t"},
    )


def test_every_object_that_leaves_has_a_row_where_it_left_and_the_counts_add_up(tmp_path):
    objects = ["a", "b", "c", "d", "e"]
    ledgers = write_shard(
        tmp_path,
        objects,
        points=["a", "c", "d", "e"],
        views=[("a", 0), ("a", 1), ("d", 0), ("e", 0), ("e", 1)],
        captioned=[("a", 0), ("a", 1), ("e", 0)],
        ranked=[("a", 0), ("a", 1), ("e", 0)],
        ledgers=[
            ("points", "b", "unreadable", "ValueError: not a mesh\nmore"),
            ("render", "c", "importer_error", "RuntimeError: bad file"),
            ("render", "a", "missing_texture", "1 texture file not found"),
            ("caption", "d", "corrupt_png", "view 0: cannot decode"),
            ("caption", "e", "corrupt_png", "view 1: cannot decode"),
        ],
        manifest_failures=[("z", "download_failed")],
    )
    summary = run(tmp_path, ledgers)
    assert summary.shard == "00000"
    assert summary.counts == {"objects": 5, "triplets": 2, "left": 3, "flagged": 0}
    assert pq.read_table(tmp_path / "triplets.parquet").column("uid").to_pylist() == ["a", "e"]
    left = {r["uid"]: r for r in pq.read_table(tmp_path / "left.parquet").to_pylist()}
    assert {u: r["reason"] for u, r in left.items()} == {"b": "no_points", "c": "no_views", "d": "no_captions"}
    assert left["b"]["detail"] == "left at the points stage: unreadable: ValueError: not a mesh"
    assert left["c"]["source"] == "/data/c.glb"
    assert left["c"]["stage"] == "triplets"

    report = dataset_summary(
        tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet", [tmp_path / "triplets.parquet"]
    )
    assert report["objects_in"] == 6
    assert report["triplets_out"] == 2
    assert report["objects_failed"] == 4
    assert report["adds_up"]
    assert report["failures"] == {
        "manifest": {"download_failed": 1},
        "points": {"unreadable": 1},
        "render": {"importer_error": 1},
        "caption": {"corrupt_png": 1},
    }
    # rendered with a fallback colour and one lost view: flags, not failures
    assert report["flags"] == {"render": {"missing_texture": 1}, "caption": {"corrupt_png": 1}}
    assert report["stages"]["render"] == {
        "in": 4,
        "out": 3,
        "failed": {"importer_error": 1},
        "flagged": {"missing_texture": 1},
    }


def test_an_object_that_left_without_a_ledger_row_is_counted_as_unrecorded(tmp_path):
    ledgers = write_shard(
        tmp_path, ["a", "b"], points=["a", "b"], views=[("a", 0)], captioned=[("a", 0)], ranked=[("a", 0)], ledgers=[]
    )
    run(tmp_path, ledgers)
    report = dataset_summary(
        tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet", [tmp_path / "triplets.parquet"]
    )
    assert report["failures"] == {"render": {"unrecorded": 1}}
    assert report["adds_up"]


def test_a_shard_whose_objects_all_failed_earlier_joins_to_an_empty_valid_shard(tmp_path):
    ledgers = write_shard(
        tmp_path,
        ["a", "b"],
        points=[],
        views=[],
        captioned=[],
        ranked=[],
        ledgers=[("points", "a", "unreadable", "x"), ("points", "b", "empty", "y")],
    )
    assert run(tmp_path, ledgers)["triplets"] == 0
    table = pq.read_table(tmp_path / "triplets.parquet")
    assert table.num_rows == 0
    assert table.schema.field("xyz").type.list_size == N
    assert json.loads(table.schema.metadata[b"ulip2.accounting"])["stages"]["points"]["failed"] == {
        "empty": 1,
        "unreadable": 1,
    }
    assert pq.read_table(tmp_path / "left.parquet").num_rows == 2


def test_a_shard_with_no_objects_at_all(tmp_path):
    ledgers = write_shard(tmp_path, [], points=[], views=[], captioned=[], ranked=[], ledgers=[])
    assert run(tmp_path, ledgers).counts == {"objects": 0, "triplets": 0, "left": 0, "flagged": 0}
    report = dataset_summary(
        tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet", [tmp_path / "triplets.parquet"]
    )
    assert report["objects_in"] == 0
    assert report["adds_up"]


def test_the_dataset_summary_reports_every_stage_of_every_shard_in_shard_order(tmp_path, caplog):
    first = write_shard(
        tmp_path / "first",
        ["a", "b", "c"],
        points=["a", "b"],
        views=[("a", 0), ("b", 0)],
        captioned=[("a", 0), ("b", 0)],
        ranked=[("a", 0)],
        ledgers=[
            ("points", "c", "empty", "no triangles"),
            ("render", "a", "missing_texture", "1 texture file not found"),
            ("rank", "b", "model_error", "view 0: out of memory"),
        ],
    )
    second = write_shard(
        tmp_path / "second",
        ["d", "e"],
        points=["d", "e"],
        views=[("d", 0), ("e", 0)],
        captioned=[("d", 0)],
        ranked=[("d", 0)],
        ledgers=[("caption", "e", "corrupt_png", "view 0: cannot decode")],
    )
    run(tmp_path / "first", first, tmp_path / "triplets" / "00000.parquet")
    run(tmp_path / "second", second, tmp_path / "triplets" / "00001.parquet")
    write_failures(
        [
            Failure(u, "manifest", "", reason, "")
            for u, reason in [("x", "download_failed"), ("y", "duplicate_uid"), ("z", "download_failed")]
        ],
        tmp_path / "failures_manifest.parquet",
    )
    pq.write_table(
        pa.concat_tables([pq.read_table(tmp_path / name / "manifest.parquet") for name in ("first", "second")]),
        tmp_path / "manifest.parquet",
    )
    caplog.clear()
    with caplog.at_level("ERROR"):
        report = dataset_summary(
            tmp_path / "manifest.parquet",
            tmp_path / "failures_manifest.parquet",
            [tmp_path / "triplets" / "00001.parquet", tmp_path / "triplets" / "00000.parquet"],
        )
    assert report == {
        "objects_in": 8,
        "triplets_out": 2,
        "objects_failed": 6,
        "adds_up": True,
        "stages": {
            "manifest": {"in": 8, "out": 5, "failed": {"download_failed": 2, "duplicate_uid": 1}, "flagged": {}},
            "points": {"in": 5, "out": 4, "failed": {"empty": 1}, "flagged": {}},
            "render": {"in": 4, "out": 4, "failed": {}, "flagged": {"missing_texture": 1}},
            "caption": {"in": 4, "out": 3, "failed": {"corrupt_png": 1}, "flagged": {}},
            "rank": {"in": 3, "out": 2, "failed": {"model_error": 1}, "flagged": {}},
            "triplets": {"in": 2, "out": 2, "failed": {}, "flagged": {}},
        },
        "failures": {
            "manifest": {"download_failed": 2, "duplicate_uid": 1},
            "points": {"empty": 1},
            "caption": {"corrupt_png": 1},
            "rank": {"model_error": 1},
        },
        "flags": {"render": {"missing_texture": 1}},
        "shards": ["00000", "00001"],
        "quality": {  # these triplets have no flags: every flag is counted, at zero
            "objects": {flag: 0 for flag in OBJECT_FLAGS},
            "views": {flag: 0 for flag in VIEW_FLAGS},
        },
    }
    assert not caplog.records


def test_a_summary_that_misses_a_shard_does_not_add_up_and_the_log_says_so(tmp_path, caplog):
    ledgers = write_shard(
        tmp_path,
        ["a", "b", "c"],
        points=["a"],
        views=[("a", 0)],
        captioned=[("a", 0)],
        ranked=[("a", 0)],
        ledgers=[("points", "b", "empty", ""), ("points", "c", "empty", "")],
    )
    run(tmp_path, ledgers)
    extra = pa.Table.from_pylist(
        [
            {
                "uid": "d",
                "source": "/data/d.glb",
                "sha256": "0" * 64,
                "bytes": 1,
                "mtime_ns": 1,
                "category": "thing",
                "shard": "00001",
            }
        ],
        schema=MANIFEST_SCHEMA,
    )
    pq.write_table(
        pa.concat_tables([pq.read_table(tmp_path / "manifest.parquet"), extra]), tmp_path / "manifest.parquet"
    )
    caplog.clear()
    with caplog.at_level("ERROR", logger="ulip2_pipeline.stages.triplets"):
        report = dataset_summary(
            tmp_path / "manifest.parquet", tmp_path / "failures_manifest.parquet", [tmp_path / "triplets.parquet"]
        )
    assert report["objects_in"] == 4
    assert report["triplets_out"] + report["objects_failed"] == 3
    assert report["adds_up"] is False
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    message = caplog.records[0].getMessage()
    assert message.startswith("the per-stage counts do not add up: ")
    assert json.loads(message.removeprefix("the per-stage counts do not add up: ")) == report["stages"]


def _stage(count_in, count_out, failed=None, flagged=None):
    return {"in": count_in, "out": count_out, "failed": failed or {}, "flagged": flagged or {}}


def test_counts_that_balance_overall_but_not_at_one_stage_do_not_add_up():
    """A failure booked at the wrong stage: the totals agree, the render and caption stages do not."""
    account = {
        "objects": 2,
        "stages": {
            "points": _stage(2, 2),
            "render": _stage(2, 1),
            "caption": _stage(1, 1, {"corrupt_png": 1}),
            "rank": _stage(1, 1),
            "triplets": _stage(1, 1),
        },
    }
    summary = merge_accounts([account], [], 2)
    assert summary["objects_in"] == summary["triplets_out"] + summary["objects_failed"]
    assert summary["adds_up"] is False


def test_counts_that_balance_at_every_stage_but_not_overall_do_not_add_up():
    """Objects the shards never saw: every stage agrees with itself, the dataset does not."""
    account = {"objects": 1, "stages": {stage: _stage(1, 1) for stage in CHAIN}}
    summary = merge_accounts([account], [{"reason": "download_failed"}], 2)
    assert all(s["in"] == s["out"] + sum(s["failed"].values()) for s in summary["stages"].values())
    assert summary["adds_up"] is False


def test_a_dataset_without_shards_or_failures_adds_up_to_nothing():
    summary = merge_accounts([], [], 0)
    assert summary["objects_in"] == 0
    assert summary["adds_up"] is True
    assert summary["stages"]["triplets"] == _stage(0, 0)
    assert (summary["failures"], summary["flags"]) == ({}, {})


def test_an_object_leaves_with_its_first_real_reason_and_a_flag_alone_is_no_reason():
    ledgers = {
        "render": [
            {"uid": "a", "reason": "missing_texture", "detail": "flag"},
            {"uid": "a", "reason": "importer_error", "detail": "RuntimeError: bad file"},
            {"uid": "a", "reason": "timeout", "detail": "600 s"},
            {"uid": "b", "reason": "missing_texture", "detail": "flag"},
        ]
    }
    account = account_shard(["a", "b", "c"], {"points": {"a", "b", "c"}, "render": {"c"}}, ledgers)
    assert account["left"]["a"] == {"stage": "render", "reason": "importer_error", "detail": "RuntimeError: bad file"}
    assert account["left"]["b"]["reason"] == "unrecorded"
    assert "wrote no ledger row" in account["left"]["b"]["detail"]
    assert account["stages"]["render"] == _stage(3, 1, {"importer_error": 1, "unrecorded": 1})


def test_objects_follow_the_chain_in_shard_order_and_leave_at_the_first_stage_they_miss():
    present = {
        "points": {"a", "b", "c", "d"},
        "render": {"a", "b", "c"},
        "caption": {"a", "b"},
        "rank": {"a", "b", "d"},
        "triplets": {"a", "d"},
    }
    account = account_shard(["d", "c", "b", "a"], present, {})
    assert account["objects"] == 4
    assert {uid: fate["stage"] for uid, fate in account["left"].items()} == {
        "d": "render",
        "c": "caption",
        "b": "triplets",
    }
    assert [(s["in"], s["out"]) for s in account["stages"].values()] == [(4, 4), (4, 3), (3, 2), (2, 2), (2, 1)]
    assert list(account["stages"]) == list(CHAIN)


def test_rows_of_objects_that_came_out_are_flags_counted_per_row_and_sorted_by_reason():
    ledgers = {
        "caption": [
            {"uid": "a", "reason": "model_error", "detail": "view 2"},
            {"uid": "a", "reason": "corrupt_png", "detail": "view 0"},
            {"uid": "b", "reason": "corrupt_png", "detail": "view 1"},
        ]
    }
    present = {stage: {"a", "b"} for stage in CHAIN}
    flagged = account_shard(["a", "b"], present, ledgers)["stages"]["caption"]["flagged"]
    assert flagged == {"corrupt_png": 2, "model_error": 1}
    assert list(flagged) == ["corrupt_png", "model_error"]
