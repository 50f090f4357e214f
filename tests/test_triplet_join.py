"""The triplet join pairs every object with its own points, views and captions.

Objects here all differ (points, colours, pictures, cameras, captions), and the shard
has objects with points but no views, views but no points, and a view without captions,
so a join that pairs by position instead of by uid gives some object another's data.
"""
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ulip2_pipeline.caption.stage import CAPTIONS_SCHEMA
from ulip2_pipeline.failures import write_failures
from ulip2_pipeline.manifest import MANIFEST_SCHEMA
from ulip2_pipeline.points import POINTS_SCHEMA
from ulip2_pipeline.rank.stage import RANKED_SCHEMA
from ulip2_pipeline.render.stage import RENDER_SCHEMA
from ulip2_pipeline import __version__
from ulip2_pipeline.triplets import hf_features, run_triplets_shard, triplet_schema

POINTS = 12
OBJECTS = ["a_points_only", "b_two_views", "c_one_view_uncaptioned", "d_points_only", "e_views_only", "f_one_view"]
WITH_POINTS = ["a_points_only", "b_two_views", "c_one_view_uncaptioned", "d_points_only", "f_one_view"]
# (uid, view) in the render shard, deliberately not in uid or view order.
RENDERED = [("f_one_view", 0), ("b_two_views", 1), ("e_views_only", 0), ("c_one_view_uncaptioned", 0),
            ("c_one_view_uncaptioned", 1), ("b_two_views", 0)]
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
    return {"azimuth_deg": 90.0 * view + index, "elevation_deg": 10.0 + index,
            "intrinsics": [float(index + view)] * 9, "world_to_camera": [float(10 * index + view)] * 16}


@pytest.fixture
def shard(tmp_path):
    manifest = [{"uid": u, "source": f"/data/{u}.glb", "sha256": f"{i:064d}", "bytes": 1, "mtime_ns": 1,
                 "category": f"class_{u[0]}", "shard": "00000"} for i, u in enumerate(OBJECTS)]
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), tmp_path / "slice.parquet")
    points = []
    for uid in WITH_POINTS:
        xyz, rgb = object_points(uid)
        index = OBJECTS.index(uid)
        points.append({"uid": uid, "category": f"class_{uid[0]}", "xyz": xyz.tolist(), "rgb": rgb.tolist(),
                       "colour_sources": ["face"], "center": [float(index), 0.5, -1.0], "scale": 1.0 + index,
                       "up_axis": "y", "num_faces": 2, "source_sha256": f"{index:064d}", "reader": "trimesh"})
    pq.write_table(pa.Table.from_pylist(points, schema=POINTS_SCHEMA), tmp_path / "points.parquet")
    renders = [{"uid": u, "category": f"class_{u[0]}", "view": v, **camera(u, v), "distance": 3.0, "fov_deg": 40.0,
                "width": 4, "height": 4, "png": view_png(u, v), "depth": None, "center": [0.0, 0.0, 0.0],
                "scale": 1.0, "normalisation_source": "points", "up_axis": "y", "missing_textures": 0}
               for u, v in RENDERED]
    pq.write_table(pa.Table.from_pylist(renders, schema=RENDER_SCHEMA), tmp_path / "render.parquet")
    pq.write_table(pa.Table.from_pylist([{"uid": u, "view": v, "captions": captions(u, v), "empty_captions": 0,
                                          "model": "m", "seed": 1} for u, v in RANKED], schema=CAPTIONS_SCHEMA),
                   tmp_path / "captions.parquet")
    pq.write_table(pa.Table.from_pylist([{"uid": u, "view": v, "captions": captions(u, v),
                                          "scores": [0.1 * v, 0.5, 0.2], "top_k": [1], "kept": [captions(u, v)[1]],
                                          "model": "m"} for u, v in RANKED], schema=RANKED_SCHEMA),
                   tmp_path / "ranked.parquet")
    ledgers = {}
    for stage in ("points", "render", "caption", "rank"):
        ledgers[stage] = tmp_path / f"failures_{stage}.parquet"
        write_failures([], ledgers[stage])
    summary = run_triplets_shard(tmp_path / "slice.parquet", tmp_path / "points.parquet", tmp_path / "render.parquet",
                                 tmp_path / "captions.parquet", tmp_path / "ranked.parquet", ledgers, "00000",
                                 {"dataset": "t"}, POINTS, 2, tmp_path / "triplets.parquet", tmp_path / "left.parquet")
    return summary, pq.read_table(tmp_path / "triplets.parquet").to_pylist(), tmp_path


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
    assert metadata["ulip2.schema_version"] == "1"
    assert (metadata["ulip2.stage"], metadata["ulip2.shard"]) == ("triplets", "00000")
    provenance = json.loads(metadata["ulip2.provenance"])
    assert provenance["dataset"] == "t"
    assert {"ulip2_pipeline", "numpy", "pyarrow", "torch"} <= set(provenance["packages"])
    assert provenance["packages"]["ulip2_pipeline"] == __version__
    assert json.loads(metadata["huggingface"]) == hf_features(POINTS)
    accounting = json.loads(metadata["ulip2.accounting"])
    assert accounting["objects"] == len(OBJECTS)
    assert accounting["stages"]["triplets"]["out"] == len(JOINED)
    assert pq.ParquetFile(folder / "triplets.parquet").metadata.num_row_groups == 2  # row_group_rows 2
