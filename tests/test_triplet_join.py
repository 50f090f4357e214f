"""The triplet join pairs every object with its own points, views and captions.

Objects here all differ (points, colours, pictures, cameras, captions), and the shard
has objects with points but no views, views but no points, and a view without captions,
so a join that pairs by position instead of by uid gives some object another's data.
"""

import io
import json
from importlib.metadata import PackageNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ulip2_pipeline import __version__
from ulip2_pipeline.failures import write_failures
from ulip2_pipeline.settings import TripletsSettings
from ulip2_pipeline.stages import triplets
from ulip2_pipeline.stages import triplets as triplets_stage
from ulip2_pipeline.stages.caption import CAPTIONS_SCHEMA
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA
from ulip2_pipeline.stages.points.stage import POINTS_SCHEMA
from ulip2_pipeline.stages.rank import RANKED_SCHEMA
from ulip2_pipeline.stages.render.stage import RENDER_SCHEMA
from ulip2_pipeline.stages.triplets import (
    hf_features,
    join_failures,
    package_versions,
    triplet_schema,
)

POINTS = 12
OBJECTS = ["a_points_only", "b_two_views", "c_one_view_uncaptioned", "d_points_only", "e_views_only", "f_one_view"]
WITH_POINTS = ["a_points_only", "b_two_views", "c_one_view_uncaptioned", "d_points_only", "f_one_view"]
# (uid, view) in the render shard, deliberately not in uid or view order.
RENDERED = [
    ("f_one_view", 0),
    ("b_two_views", 1),
    ("e_views_only", 0),
    ("c_one_view_uncaptioned", 0),
    ("c_one_view_uncaptioned", 1),
    ("b_two_views", 0),
]
RANKED = [v for v in RENDERED if v != ("c_one_view_uncaptioned", 1)]
JOINED = ["b_two_views", "c_one_view_uncaptioned", "f_one_view"]


def object_points(uid: str) -> tuple[np.ndarray, np.ndarray]:
    index = OBJECTS.index(uid)
    xyz = np.random.default_rng(index).normal(size=(POINTS, 3)).astype(np.float32)
    rgb = np.full((POINTS, 3), 10 * index, np.uint8)
    rgb[:, 1] = np.arange(POINTS)
    return xyz, rgb


def view_png(uid: str, view: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (OBJECTS.index(uid) * 40, view * 100, 7)).save(out, format="PNG")
    return out.getvalue()


def captions(uid: str, view: int) -> list[str]:
    return [f"{uid} seen from view {view}, caption {j}" for j in range(3)]


def camera(uid: str, view: int) -> dict:
    index = OBJECTS.index(uid)
    return {
        "azimuth_deg": 90.0 * view + index,
        "elevation_deg": 10.0 + index,
        "intrinsics": [float(index + view)] * 9,
        "world_to_camera": [float(10 * index + view)] * 16,
    }


def depth_map(uid: str, view: int) -> bytes:
    return np.full((4, 4), OBJECTS.index(uid) + view / 10, np.float32).tobytes()


def join_shard(
    tmp_path,
    with_depth: bool = False,
    provenance: dict | None = None,
    fused=None,
    view_quality: dict | None = None,
    kept: dict | None = None,
    quality=None,
):
    """Write every stage's shard for OBJECTS and join them: (summary, triplet rows, folder). ``fused``: a fuse
    stage's shard to join too; ``view_quality``: (uid, view) -> the render's coverage, visible_fraction and bbox;
    ``kept``: (uid, view) -> the kept caption instead of the usual one; ``quality``: the flag thresholds."""
    view_quality, kept = view_quality or {}, kept or {}
    manifest = [
        {
            "uid": u,
            "source": f"/data/{u}.glb",
            "sha256": f"{i:064d}",
            "bytes": 1,
            "mtime_ns": 1,
            "category": f"class_{u[0]}",
            "shard": "00000",
        }
        for i, u in enumerate(OBJECTS)
    ]
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), tmp_path / "slice.parquet")
    points = []
    for uid in WITH_POINTS:
        xyz, rgb = object_points(uid)
        index = OBJECTS.index(uid)
        points.append(
            {
                "uid": uid,
                "category": f"class_{uid[0]}",
                "xyz": xyz.tolist(),
                "rgb": rgb.tolist(),
                "colour_sources": ["face"],
                "center": [float(index), 0.5, -1.0],
                "scale": 1.0 + index,
                "up_axis": "y",
                "num_faces": 2,
                "source_sha256": f"{index:064d}",
                "reader": "trimesh",
            }
        )
    pq.write_table(pa.Table.from_pylist(points, schema=POINTS_SCHEMA), tmp_path / "points.parquet")
    renders = [
        {
            "uid": u,
            "category": f"class_{u[0]}",
            "view": v,
            **camera(u, v),
            "distance": 3.0,
            "fov_deg": 40.0,
            "width": 4,
            "height": 4,
            "png": view_png(u, v),
            "depth": depth_map(u, v) if with_depth else None,
            "center": [0.0, 0.0, 0.0],
            "scale": 1.0,
            "normalisation_source": "points",
            "up_axis": "y",
            "missing_textures": 0,
            **view_quality.get((u, v), {}),
        }
        for u, v in RENDERED
    ]
    pq.write_table(pa.Table.from_pylist(renders, schema=RENDER_SCHEMA), tmp_path / "render.parquet")
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"uid": u, "view": v, "captions": captions(u, v), "empty_captions": 0, "model": "m", "seed": 1}
                for u, v in RANKED
            ],
            schema=CAPTIONS_SCHEMA,
        ),
        tmp_path / "captions.parquet",
    )
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "uid": u,
                    "view": v,
                    "captions": captions(u, v),
                    "scores": [0.1 * v, 0.5, 0.2],
                    "top_k": [1],
                    "kept": [kept.get((u, v), captions(u, v)[1])],
                    "model": "m",
                }
                for u, v in RANKED
            ],
            schema=RANKED_SCHEMA,
        ),
        tmp_path / "ranked.parquet",
    )
    ledgers = {}
    for stage in ("points", "render", "caption", "rank"):
        ledgers[stage] = tmp_path / f"failures_{stage}.parquet"
        write_failures([], ledgers[stage])
    summary = triplets_stage.run_shard(
        triplets_stage.Inputs(
            tmp_path / "slice.parquet",
            tmp_path / "points.parquet",
            tmp_path / "render.parquet",
            tmp_path / "captions.parquet",
            tmp_path / "ranked.parquet",
            **{f"{stage}_failures": path for stage, path in ledgers.items()},
            shard="00000",
            fused=fused,
        ),
        TripletsSettings(row_group_rows=2),
        triplets_stage.Outputs(tmp_path / "triplets.parquet", tmp_path / "left.parquet"),
        points=POINTS,
        provenance=provenance or {"dataset": "t"},
        quality=quality,
    )
    return summary, pq.read_table(tmp_path / "triplets.parquet").to_pylist(), tmp_path


@pytest.fixture
def shard(tmp_path):
    return join_shard(tmp_path)


def test_only_objects_with_points_and_captioned_views_are_joined(shard):
    summary, rows, _ = shard
    assert [r["uid"] for r in rows] == JOINED
    assert summary["triplets"] == 3


def test_every_object_gets_its_own_points_colours_and_normalisation(shard):
    _, rows, _ = shard
    for row in rows:
        xyz, rgb = object_points(row["uid"])
        index = OBJECTS.index(row["uid"])
        np.testing.assert_array_equal(np.asarray(row["xyz"], np.float32), xyz, err_msg=row["uid"])
        np.testing.assert_array_equal(np.asarray(row["rgb"], np.uint8), rgb, err_msg=row["uid"])
        assert row["center"] == [float(index), 0.5, -1.0]
        assert row["scale"] == 1.0 + index
        assert row["category"] == f"class_{row['uid'][0]}"


def test_every_object_gets_its_own_views_in_view_order_with_their_cameras_and_captions(shard):
    _, rows, _ = shard
    for row in rows:
        uid = row["uid"]
        views = sorted(v for u, v in RANKED if u == uid)
        assert row["views"] == views
        assert [image["bytes"] for image in row["images"]] == [view_png(uid, v) for v in views]
        assert [image["path"] for image in row["images"]] == [f"{uid}/{v:03d}.png" for v in views]
        assert row["azimuth_deg"] == [camera(uid, v)["azimuth_deg"] for v in views]
        assert row["elevation_deg"] == [camera(uid, v)["elevation_deg"] for v in views]
        assert row["intrinsics"] == [camera(uid, v)["intrinsics"] for v in views]
        assert row["world_to_camera"] == [camera(uid, v)["world_to_camera"] for v in views]
        assert row["captions"] == [captions(uid, v) for v in views]
        assert row["kept"] == [[captions(uid, v)[1]] for v in views]
        np.testing.assert_allclose(row["caption_scores"], [[0.1 * v, 0.5, 0.2] for v in views], rtol=1e-6)
        assert row["depth"] is None


def test_the_objects_left_out_are_in_the_ledger_with_where_they_left(shard):
    summary, _, folder = shard
    left = {r["uid"]: r["reason"] for r in pq.read_table(folder / "left.parquet").to_pylist()}
    assert left == {"a_points_only": "no_views", "d_points_only": "no_views", "e_views_only": "no_points"}
    assert summary["left"] == 3


def test_the_huggingface_features_describe_exactly_the_triplet_schema():
    import datasets

    features = datasets.Features.from_dict(hf_features(POINTS)["info"]["features"])
    described = [(field.name, field.type) for field in features.arrow_schema]
    assert described == [(field.name, field.type) for field in triplet_schema(POINTS)]
    assert isinstance(features["images"].feature, datasets.Image)


def test_the_shard_records_its_schema_stage_provenance_and_accounting(shard):
    _, _, folder = shard
    metadata = {k.decode(): v.decode() for k, v in pq.read_schema(folder / "triplets.parquet").metadata.items()}
    assert metadata["ulip2.schema_version"] == "2"
    assert (metadata["ulip2.stage"], metadata["ulip2.shard"]) == ("triplets", "00000")
    provenance = json.loads(metadata["ulip2.provenance"])
    assert provenance["dataset"] == "t"
    assert {"ulip2_pipeline", "numpy", "pyarrow", "torch"} <= set(provenance["packages"])
    assert provenance["packages"]["ulip2_pipeline"] == __version__
    assert json.loads(metadata["huggingface"]) == hf_features(POINTS)
    accounting = json.loads(metadata["ulip2.accounting"])
    assert set(accounting) == {"objects", "stages"}  # where each object left is in the ledger, not here
    assert accounting["objects"] == len(OBJECTS)
    assert accounting["stages"]["triplets"]["out"] == len(JOINED)
    assert pq.ParquetFile(folder / "triplets.parquet").metadata.num_row_groups == 2  # row_group_rows 2


def test_with_a_depth_preset_every_object_gets_its_own_depth_maps_in_view_order(tmp_path):
    _, rows, _ = join_shard(tmp_path, with_depth=True)
    for row in rows:
        views = sorted(v for u, v in RANKED if u == row["uid"])
        assert row["depth"] == [depth_map(row["uid"], v) for v in views]


TRIPLET_COLUMNS = [
    ("uid", pa.string()),
    ("category", pa.string()),
    ("xyz", pa.list_(pa.list_(pa.float32(), 3), POINTS)),
    ("rgb", pa.list_(pa.list_(pa.uint8(), 3), POINTS)),
    ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
    ("views", pa.list_(pa.int16())),
    ("azimuth_deg", pa.list_(pa.float64())),
    ("elevation_deg", pa.list_(pa.float64())),
    ("intrinsics", pa.list_(pa.list_(pa.float64(), 9))),
    ("world_to_camera", pa.list_(pa.list_(pa.float64(), 16))),
    ("depth", pa.list_(pa.binary())),
    ("center", pa.list_(pa.float64(), 3)),
    ("scale", pa.float64()),
    ("up_axis", pa.string()),
    ("captions", pa.list_(pa.list_(pa.string()))),
    ("caption_scores", pa.list_(pa.list_(pa.float32()))),
    ("kept", pa.list_(pa.list_(pa.string()))),
    ("object_caption", pa.string()),
    ("coverage", pa.list_(pa.float32())),
    ("visible_fraction", pa.list_(pa.float32())),
    ("bbox", pa.list_(pa.list_(pa.int32()))),
    ("view_flags", pa.list_(pa.list_(pa.string()))),
    ("flags", pa.list_(pa.string())),
    ("fingerprint", pa.list_(pa.float32())),
]


def test_the_triplet_schema_is_the_published_one():
    """README "Output format": names, order and types are a contract with every reader of the dataset."""
    schema = triplet_schema(POINTS)
    assert schema.names == [name for name, _ in TRIPLET_COLUMNS]
    for name, expected in TRIPLET_COLUMNS:
        assert schema.field(name).type == expected, name


def test_only_the_uid_of_a_triplet_is_required():
    schema = triplet_schema(POINTS)
    assert not schema.field("uid").nullable
    assert all(field.nullable for field in schema if field.name != "uid")


def test_the_point_count_sets_the_fixed_length_of_the_point_columns():
    schema = triplet_schema(8192)
    assert schema.field("xyz").type.list_size == 8192
    assert schema.field("rgb").type.list_size == 8192


def test_the_huggingface_features_are_the_published_ones():
    """What `datasets` reads from the file metadata, so readers written against it keep working."""
    features = hf_features(POINTS)["info"]["features"]
    assert list(features) == [name for name, _ in TRIPLET_COLUMNS]
    assert features["uid"] == {"dtype": "string", "_type": "Value"}
    assert features["xyz"] == {
        "feature": {"feature": {"dtype": "float32", "_type": "Value"}, "length": 3, "_type": "List"},
        "length": POINTS,
        "_type": "List",
    }
    assert features["images"] == {"feature": {"_type": "Image"}, "_type": "List"}
    assert features["depth"] == {"feature": {"dtype": "binary", "_type": "Value"}, "_type": "List"}
    assert features["kept"] == {
        "feature": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
        "_type": "List",
    }


def test_the_provenance_names_the_version_of_every_package_that_shapes_the_data(monkeypatch):
    monkeypatch.setattr(triplets, "version", lambda name: f"{name}-1.0")
    assert package_versions() == {
        "ulip2_pipeline": __version__,
        **{
            name: f"{name}-1.0"
            for name in ("bpy", "trimesh", "torch", "transformers", "open_clip_torch", "pyarrow", "numpy")
        },
    }


def test_a_package_that_is_not_installed_is_left_out_of_the_provenance(monkeypatch):
    def version(name):
        if name in ("bpy", "open_clip_torch"):
            raise PackageNotFoundError(name)
        return "1.0"

    monkeypatch.setattr(triplets, "version", version)
    assert set(package_versions()) == {"ulip2_pipeline", "trimesh", "torch", "transformers", "pyarrow", "numpy"}


def test_the_job_log_names_every_object_left_out_and_the_shard_summary(tmp_path, caplog):
    with caplog.at_level("INFO", logger="ulip2_pipeline.stages.triplets"):
        summary, _, _ = join_shard(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "a_points_only: no_views: left at the render stage: unrecorded: "
        "the stage wrote no ledger row for this object (a bug: please report it)",
        "d_points_only: no_views: left at the render stage: unrecorded: "
        "the stage wrote no ledger row for this object (a bug: please report it)",
        "e_views_only: no_points: left at the points stage: unrecorded: "
        "the stage wrote no ledger row for this object (a bug: please report it)",
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert infos == [f"shard summary: {json.dumps(summary.as_dict())}"]
    assert summary.shard == "00000"
    assert summary.counts == {"objects": len(OBJECTS), "triplets": len(JOINED), "left": 3, "flagged": 0}


def test_the_ledger_rows_of_the_join_name_the_stage_the_source_and_the_shard(shard):
    _, _, folder = shard
    ledger = pq.read_table(folder / "left.parquet")
    assert ledger.schema.metadata[b"ulip2.stage"] == b"triplets"
    assert ledger.schema.metadata[b"ulip2.shard"] == b"00000"
    rows = ledger.to_pylist()
    assert [r["uid"] for r in rows] == ["a_points_only", "d_points_only", "e_views_only"]
    assert {r["stage"] for r in rows} == {"triplets"}
    assert [r["source"] for r in rows] == [f"/data/{r['uid']}.glb" for r in rows]


def _left(stage, reason="timeout", detail="killed after 600 s"):
    return {"stage": stage, "reason": reason, "detail": detail}


def test_the_join_reason_says_which_modality_is_missing():
    account = {
        "left": {
            "p": _left("points"),
            "r": _left("render"),
            "c": _left("caption"),
            "k": _left("rank"),
            "t": _left("triplets"),
        }
    }
    reasons = {f.uid: f.reason for f in join_failures(account, {})}
    assert reasons == {"p": "no_points", "r": "no_views", "c": "no_captions", "k": "no_captions", "t": "not_joined"}


def test_join_failures_come_in_uid_order_with_the_source_where_the_shard_has_one():
    account = {"left": {"b": _left("render"), "a": _left("points")}}
    failures = join_failures(account, {"a": "/data/a.glb"})
    assert [f.uid for f in failures] == ["a", "b"]
    assert [f.source for f in failures] == ["/data/a.glb", ""]
    assert {f.stage for f in failures} == {"triplets"}


def test_the_join_detail_keeps_only_the_first_line_of_the_stage_detail():
    traceback = "\n  ValueError: not a mesh\nTraceback (most recent call last)\n"
    account = {
        "left": {
            "a": _left("points", "unreadable", traceback),
            "b": _left("render", "no_gpu", "   \n"),
            "c": _left("caption", "model_error", ""),
        }
    }
    details = {f.uid: f.detail for f in join_failures(account, {})}
    assert details == {
        "a": "left at the points stage: unreadable: ValueError: not a mesh",
        "b": "left at the render stage: no_gpu: ",
        "c": "left at the caption stage: model_error: ",
    }


def test_the_shard_is_written_in_exactly_the_triplet_schema(shard):
    _, _, folder = shard
    assert pq.read_schema(folder / "triplets.parquet").remove_metadata() == triplet_schema(POINTS)


def test_the_json_in_the_shard_metadata_is_canonical_whatever_order_the_provenance_came_in(tmp_path):
    """Sorted keys: the same run writes the same metadata bytes, so shards compare byte for byte."""
    metadata = []
    for name, provenance in (
        ("first", {"seed": 0, "dataset": "t", "config_hash": "abc"}),
        ("second", {"config_hash": "abc", "dataset": "t", "seed": 0}),
    ):
        (tmp_path / name).mkdir()
        _, _, folder = join_shard(tmp_path / name, provenance=provenance)
        metadata.append(pq.read_schema(folder / "triplets.parquet").metadata)
    for key in (b"ulip2.provenance", b"ulip2.accounting"):
        assert metadata[0][key] == metadata[1][key], key
        assert metadata[0][key].decode() == json.dumps(json.loads(metadata[0][key]), sort_keys=True), key
