"""quality.drop_objects / drop_views / drop_duplicates: flagged data left out of training and the exports."""

import json

import numpy as np
import pyarrow as pa
import pytest

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.exports.ulip import export_ulip_shard
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.stages.duplicates import DUPLICATES_SCHEMA
from ulip2_pipeline.stages.triplets import triplet_schema
from ulip2_pipeline.train.loader import ShardError, TripletDataset

POINTS, VIEWS = 64, 3


def flagged_shard(tmp_path, flags_of: dict[str, tuple[list[str], list[list[str]]]], drop=()):
    """One triplet shard: ``flags_of`` uid -> (object flags, per-view flags); views are 0..VIEWS-1. ``drop``:
    columns to leave out (a shard written before them)."""
    rng = np.random.default_rng(0)
    rows = []
    for uid, (flags, view_flags) in flags_of.items():
        rows.append(
            {
                "uid": uid,
                "category": "chair",
                "xyz": rng.normal(size=(POINTS, 3)).astype(np.float32).tolist(),
                "rgb": rng.integers(0, 256, size=(POINTS, 3)).tolist(),
                "views": list(range(VIEWS)),
                "images": [{"bytes": f"png {uid} {v}".encode(), "path": f"{uid}/{v:03d}.png"} for v in range(VIEWS)],
                "captions": [[f"{uid} view {v}"] for v in range(VIEWS)],
                "caption_scores": [[0.5] for _ in range(VIEWS)],
                "kept": [[f"{uid} view {v}"] for v in range(VIEWS)],
                "flags": flags,
                "view_flags": view_flags,
            }
        )
    path = tmp_path / "00000.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=triplet_schema(POINTS)).drop_columns(list(drop)), path)
    return path


CLEAN = ([], [[], [], []])
SHARD = {
    "clean": CLEAN,
    "tiny": (["tiny_object"], [[], [], []]),
    "dim": (["low_contrast"], [["low_contrast"], [], ["low_contrast"]]),
    "all_dim": (["low_contrast"], [["low_contrast"]] * 3),
    "copy": CLEAN,
}


def seen(dataset: TripletDataset, epochs: int = 8) -> dict[str, set[str]]:
    """uid -> every caption the loader gave it over ``epochs`` epochs (one random view each time)."""
    out: dict[str, set[str]] = {}
    for epoch in range(epochs):
        for batch in dataset.epoch(epoch):
            for uid, caption in zip(batch["uid"], batch["caption"]):
                out.setdefault(uid, set()).add(caption)
    return out


def loader(path, quality=None):
    return TripletDataset([path], num_points=POINTS, batch_size=1, shuffle_buffer=1, quality=quality)


def test_without_filters_the_loader_gives_every_object_and_view(tmp_path):
    captions = seen(loader(flagged_shard(tmp_path, SHARD)), epochs=12)
    assert sorted(captions) == sorted(SHARD)
    assert captions["dim"] == {f"dim view {v}" for v in range(VIEWS)}


def test_dropped_object_flags_leave_those_objects_out_of_training(tmp_path):
    quality = QualityFilter(drop_objects=frozenset({"tiny_object"}))
    assert sorted(seen(loader(flagged_shard(tmp_path, SHARD), quality))) == ["all_dim", "clean", "copy", "dim"]


def test_dropped_view_flags_leave_those_views_out_and_an_object_without_views_goes(tmp_path):
    quality = QualityFilter(drop_views=frozenset({"low_contrast"}))
    captions = seen(loader(flagged_shard(tmp_path, SHARD), quality), epochs=12)
    assert "all_dim" not in captions
    assert captions["dim"] == {"dim view 1"}
    assert captions["clean"] == {f"clean view {v}" for v in range(VIEWS)}


def test_dropped_duplicates_leave_the_later_copy_out(tmp_path):
    table = tmp_path / "duplicates.parquet"
    write_parquet(
        pa.Table.from_pylist([{"uid": "copy", "duplicate_of": "clean", "distance": 0.01}], DUPLICATES_SCHEMA), table
    )
    quality = QualityFilter.from_config({"drop_duplicates": True}, table)
    assert quality.duplicates == {"copy"}
    assert sorted(seen(loader(flagged_shard(tmp_path, SHARD), quality))) == ["all_dim", "clean", "dim", "tiny"]


def test_drop_duplicates_without_the_table_is_an_error():
    with pytest.raises(ValueError, match="duplicates table"):
        QualityFilter.from_config({"drop_duplicates": True})


def test_a_filter_survives_the_training_job_file(tmp_path):
    table = tmp_path / "duplicates.parquet"
    write_parquet(
        pa.Table.from_pylist([{"uid": "copy", "duplicate_of": "clean", "distance": 0.0}], DUPLICATES_SCHEMA), table
    )
    quality = QualityFilter.from_config({"drop_objects": ["tiny_object"], "drop_duplicates": True}, table)
    again = QualityFilter.from_config(json.loads(json.dumps(quality.as_config())))
    assert again == quality
    assert again.duplicates == {"copy"}


def test_a_shard_written_before_quality_flags_is_named_when_a_filter_needs_them(tmp_path):
    old = flagged_shard(tmp_path, {"a": CLEAN}, drop=["flags", "view_flags"])
    with pytest.raises(ShardError, match=r"00000.parquet.*flags"):
        loader(old, QualityFilter(drop_objects=frozenset({"tiny_object"})))


def test_the_ulip_export_leaves_dropped_objects_and_views_out(tmp_path):
    shard = flagged_shard(tmp_path, SHARD)
    quality = QualityFilter(drop_objects=frozenset({"tiny_object"}), drop_views=frozenset({"low_contrast"}))
    count = export_ulip_shard(shard, tmp_path / "ulip", tmp_path / "captions.json", quality)
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert count == 3
    assert sorted(captions) == sorted(
        [f"clean/{v:03d}.png" for v in range(VIEWS)] + ["dim/001.png"] + [f"copy/{v:03d}.png" for v in range(VIEWS)]
    )
    assert not (tmp_path / "ulip" / "tiny").exists()
    assert not (tmp_path / "ulip" / "dim" / "000.png").exists()
    assert (tmp_path / "ulip" / "dim" / "001.png").read_bytes() == b"png dim 1"


def test_the_lists_of_a_quality_section_become_the_filter():
    quality = QualityFilter.from_config(
        {"drop_objects": ["tiny_object"], "drop_views": ["blank_view"]}, "unused.parquet"
    )
    assert quality.drop_objects == {"tiny_object"}
    assert quality.drop_views == {"blank_view"}
    assert quality.duplicates_path is None  # a path given without drop_duplicates is not read or recorded
    again = QualityFilter.from_config(quality.as_config())
    assert again == quality


def test_drop_duplicates_without_a_table_names_the_setting():
    with pytest.raises(ValueError, match=r"^quality\.drop_duplicates needs the dataset's duplicates table$"):
        QualityFilter.from_config({"drop_duplicates": True})


def test_select_cuts_the_per_view_columns_and_says_where_the_views_were():
    row = {
        "uid": "a",
        "views": [0, 1, 2],
        "flags": [],
        "view_flags": [[], ["low_contrast"], []],
        "kept": ["x", "y", "z"],
    }
    kept = QualityFilter(drop_views=frozenset({"low_contrast"})).select(row, ("views", "kept", "view_flags"))
    assert kept["views"] == [0, 2]
    assert kept["kept"] == ["x", "z"]
    assert kept["view_positions"] == [0, 2]
    whole = QualityFilter(drop_objects=frozenset({"tiny_object"})).select(row, ("views", "kept"))
    assert whole["views"] == [0, 1, 2]
    assert whole["view_positions"] == [0, 1, 2]
    assert QualityFilter(duplicates=frozenset({"a"})).select(row, ("views",)) is None


def test_views_without_recorded_flags_all_stay():
    quality = QualityFilter(drop_views=frozenset({"low_contrast"}))
    assert quality.views(None, 3) == [0, 1, 2]
    assert quality.keeps("a", None, None, 3)


def test_the_filter_describes_itself_for_the_training_log():
    quality = QualityFilter(frozenset({"tiny_object"}), frozenset({"blank_view"}), frozenset({"x", "y"}))
    assert quality.describe() == "dropping objects flagged ['tiny_object'], views flagged ['blank_view'], 2 duplicates"
    assert QualityFilter().describe() == "dropping nothing"
