"""The triplets stage flags views and objects from the render's measures, the captions and the points."""

import json

import pyarrow.parquet as pq
import pytest
from test_triplet_join import join_shard

from ulip2_pipeline.accounting import FLAG_REASONS
from ulip2_pipeline.config import default_config
from ulip2_pipeline.quality.flags import OBJECT_FLAGS
from ulip2_pipeline.settings import QualitySettings

MEASURES = {
    ("b_two_views", 0): {"coverage": 0.30, "visible_fraction": 0.30, "bbox": [0, 0, 4, 3]},
    ("b_two_views", 1): {"coverage": 0.25, "visible_fraction": 0.01, "bbox": [1, 0, 4, 4]},
    ("c_one_view_uncaptioned", 0): {"coverage": 0.40, "visible_fraction": 0.97, "bbox": [0, 1, 3, 4]},
    ("f_one_view", 0): {"coverage": 0.004, "visible_fraction": 0.9, "bbox": [2, 2, 3, 3]},
}
LOOPING = "a white white white white toilet"


def defaults(**changes) -> QualitySettings:
    return QualitySettings.from_config({**default_config()["quality"], **changes})


@pytest.fixture
def flagged(tmp_path):
    return join_shard(tmp_path, view_quality=MEASURES, kept={("c_one_view_uncaptioned", 0): LOOPING})


def by_uid(rows):
    return {r["uid"]: r for r in rows}


def test_the_renders_measures_reach_the_triplets_view_for_view(flagged):
    _, rows, _ = flagged
    b = by_uid(rows)["b_two_views"]
    assert b["coverage"] == pytest.approx([0.30, 0.25])
    assert b["visible_fraction"] == pytest.approx([0.30, 0.01])
    assert b["bbox"] == [[0, 0, 4, 3], [1, 0, 4, 4]]


def test_views_and_objects_get_the_flags_their_measures_and_captions_call_for(flagged):
    _, rows, _ = flagged
    rows = by_uid(rows)
    assert rows["b_two_views"]["view_flags"] == [["low_contrast"], ["blank_view", "low_contrast"]]
    assert rows["b_two_views"]["flags"] == ["blank_view", "low_contrast"]
    assert rows["c_one_view_uncaptioned"]["view_flags"] == [["repetitive_caption"]]
    assert rows["c_one_view_uncaptioned"]["flags"] == ["repetitive_caption"]
    assert rows["f_one_view"]["flags"] == ["tiny_object"]
    assert rows["f_one_view"]["view_flags"] == [[]]


def test_each_flag_is_a_ledger_row_that_leaves_nothing_out(flagged):
    summary, rows, folder = flagged
    ledger = pq.read_table(folder / "left.parquet").to_pylist()
    flags = sorted((r["uid"], r["reason"]) for r in ledger if r["reason"] in FLAG_REASONS)
    assert flags == [
        ("b_two_views", "blank_view"),
        ("b_two_views", "low_contrast"),
        ("c_one_view_uncaptioned", "repetitive_caption"),
        ("f_one_view", "tiny_object"),
    ]
    detail = next(r["detail"] for r in ledger if r["reason"] == "tiny_object")
    assert "0.40%" in detail
    accounting = json.loads(pq.read_schema(folder / "triplets.parquet").metadata[b"ulip2.accounting"])
    assert accounting["stages"]["triplets"]["flagged"] == {
        "blank_view": 1,
        "low_contrast": 1,
        "repetitive_caption": 1,
        "tiny_object": 1,
    }
    assert accounting["stages"]["triplets"]["out"] == 3  # flags leave nothing out
    assert summary["flagged"] == 3
    assert summary["triplets"] == 3


def test_the_shard_counts_objects_and_views_per_flag(flagged):
    _, _, folder = flagged
    counts = json.loads(pq.read_schema(folder / "triplets.parquet").metadata[b"ulip2.quality"])
    assert counts["objects"]["low_contrast"] == 1
    assert counts["objects"]["tiny_object"] == 1
    assert counts["views"]["low_contrast"] == 2
    assert counts["views"]["blank_view"] == 1
    assert counts["objects"]["outlier_geometry"] == 0  # every flag is listed, zeros too


def test_thresholds_come_from_the_configuration(tmp_path):
    _, rows, _ = join_shard(
        tmp_path, view_quality=MEASURES, quality=defaults(low_contrast_below=0.2, blank_below=0.0, tiny_coverage=0.001)
    )
    rows = by_uid(rows)
    assert rows["b_two_views"]["view_flags"] == [[], ["low_contrast"]]
    assert rows["f_one_view"]["flags"] == []


def test_a_render_without_the_measures_gives_no_picture_flags(tmp_path):
    _, rows, _ = join_shard(tmp_path)
    assert all(r["flags"] == [] and r["coverage"] == [None] * len(r["views"]) for r in rows)


def test_the_ledger_knows_every_quality_flag_as_a_flag():
    assert set(OBJECT_FLAGS) <= FLAG_REASONS


def test_missing_textures_flag_the_object_without_a_second_ledger_row(tmp_path):
    measures = {**MEASURES, ("b_two_views", 1): {**MEASURES[("b_two_views", 1)], "missing_textures": 2}}
    _, rows, folder = join_shard(tmp_path, view_quality=measures)
    assert "missing_texture" in by_uid(rows)["b_two_views"]["flags"]
    reasons = [r["reason"] for r in pq.read_table(folder / "left.parquet").to_pylist()]
    assert "missing_texture" not in reasons  # the render ledger already has it
