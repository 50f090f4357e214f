"""The report's quality page on small triplet shards with known flags (report/quality.py)."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ulip2_pipeline.quality.flags import OBJECT_FLAGS
from ulip2_pipeline.report.collect import sample_key
from ulip2_pipeline.report.html import thumbnail
from ulip2_pipeline.report.quality import build_quality_page, write_quality_page
from ulip2_pipeline.settings import ReportSettings
from ulip2_pipeline.stages.duplicates import DUPLICATES_SCHEMA
from ulip2_pipeline.stages.triplets import triplet_schema

POINTS = 4
VIEWS = 3
SIZE = 32  # thumbnail_px
SETTINGS = ReportSettings(
    sample_objects=4, extremes=6, point_objects=0, point_views=1, thumbnail_px=SIZE, failure_examples=1
)
THRESHOLDS = {"blank_below": 0.05, "low_contrast_below": 0.5, "tiny_coverage": 0.01}
NASTY = '<script>alert("x")</script> & co'
QUALITY_COLUMNS = ("coverage", "visible_fraction", "bbox", "view_flags", "flags", "fingerprint")


def png(index: int, view: int) -> bytes:
    """A picture no other (object, view) has: a solid colour."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (2 * index % 256, 40 + 70 * view, 100 + index // 128)).save(out, format="PNG")
    return out.getvalue()


def shown(index: int, view: int) -> str:
    """The thumbnail the page inlines for that view."""
    return thumbnail(png(index, view), SIZE)


def obj(index: int, view_flags=None, flags=None, visible=None, kept=None) -> dict:
    view_flags = view_flags or [[] for _ in range(VIEWS)]
    if flags is None:  # an object has every flag one of its views has
        flags = sorted({f for v in view_flags for f in v})
    return {
        "uid": f"obj_{index:03d}",
        "category": "mug",
        "xyz": [[0.0, 0.0, 0.0]] * POINTS,
        "rgb": [[0, 0, 0]] * POINTS,
        "images": [{"bytes": png(index, v), "path": f"obj_{index:03d}/{v:03d}.png"} for v in range(VIEWS)],
        "views": list(range(VIEWS)),
        "kept": kept or [[f"a mug {index}, view {v}"] for v in range(VIEWS)],
        "coverage": [0.2] * VIEWS,
        "visible_fraction": visible or [0.95] * VIEWS,
        "view_flags": view_flags,
        "flags": flags,
    }


# The dataset: objects 0..9, some flagged in known ways; 8 and 9 (and 6, 7 apart from the duplicates) are clean.
OBJECTS = [
    obj(0),
    obj(1, view_flags=[[], ["low_contrast"], []], visible=[0.95, 0.31, 0.95]),
    obj(
        2,
        view_flags=[["blank_view", "low_contrast"], [], ["blank_view", "low_contrast"]],
        visible=[0.01, 0.95, 0.01],
    ),
    obj(3, flags=["tiny_object"]),
    obj(4, view_flags=[[], [], ["empty_caption"]], kept=[["a"], ["b"], [""]]),
    obj(5, view_flags=[["repetitive_caption"], [], []], kept=[[NASTY], ["b"], ["c"]]),
    obj(6),
    obj(7),
    obj(8),
    obj(9),
]


def write_triplets(root: Path, shards: list[list[dict]], schema: pa.Schema | None = None) -> list[Path]:
    (root / "triplets").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(shards):
        path = root / "triplets" / f"{i:05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=schema or triplet_schema(POINTS))
        pq.write_table(table, path, row_group_size=2)
        paths.append(path)
    return paths


def write_duplicates(root: Path, pairs: list[tuple[str, str, float]]) -> Path:
    path = root / "duplicates.parquet"
    rows = [{"uid": u, "duplicate_of": d, "distance": x} for u, d, x in pairs]
    pq.write_table(pa.Table.from_pylist(rows, schema=DUPLICATES_SCHEMA), path)
    return path


def flag_row(html: str, flag: str) -> list[str]:
    """The flag table's cells after the flag's name: meaning, objects, share, views, share of views."""
    row = re.search(rf"<tr><td><b>{flag}</b></td>(.*?)</tr>", html)
    assert row, f"no table row for {flag}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    triplets = write_triplets(root, [OBJECTS[:4], OBJECTS[4:]])
    duplicates = write_duplicates(root, [("obj_007", "obj_006", 0.0123)])
    return triplets, duplicates, build_quality_page(triplets, duplicates, "demo", SETTINGS, THRESHOLDS)


def test_every_flag_is_counted_per_object_and_per_view(dataset):
    *_, html = dataset
    expected = {  # flag: objects, share of 10 triplets, views, share of 30 views
        "low_contrast": ("2", "20.0 %", "3", "10.0 %"),
        "blank_view": ("1", "10.0 %", "2", "6.7 %"),
        "empty_caption": ("1", "10.0 %", "1", "3.3 %"),
        "repetitive_caption": ("1", "10.0 %", "1", "3.3 %"),
        "degenerate_caption": ("0", "0.0 %", "0", "0.0 %"),  # checked, none found: still a row
        "tiny_object": ("1", "10.0 %", "–", "–"),  # object-only: no view count
        "outlier_geometry": ("0", "0.0 %", "–", "–"),
        "duplicate": ("1", "10.0 %", "–", "–"),
    }
    for flag, counts in expected.items():
        assert tuple(flag_row(html, flag)[1:]) == counts, flag
    assert "below 0.5" in flag_row(html, "low_contrast")[0]  # the threshold in force
    assert "<b>No examples</b> of outlier_geometry, missing_texture, degenerate_caption: no object has them." in html


def test_examples_show_the_flagged_view_of_flagged_objects_only(dataset):
    *_, html = dataset
    examples = html[html.index("</svg>") :]  # after the table and the histogram
    assert shown(1, 1) in examples  # obj_001's low-contrast view...
    assert shown(1, 0) not in html  # ...not its first view
    assert shown(2, 0) in examples  # obj_002: its first flagged view
    assert shown(3, 0) in examples  # tiny_object (object-only): the first view
    assert shown(4, 2) in examples
    assert shown(5, 0) in examples
    for index in (0, 8, 9):  # clean objects appear nowhere
        for view in range(VIEWS):
            assert shown(index, view) not in html, (index, view)
    low = html[html.index("<h2>low_contrast") : html.index("<h2>empty_caption")]
    assert "0.310" in low  # obj_001's view: its visible fraction
    assert "20.0 %" in low  # and coverage
    assert "1 of 3 views flagged" in low


def test_captions_are_escaped(dataset):
    *_, html = dataset
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html


def test_duplicate_pair_side_by_side(dataset):
    *_, html = dataset
    section = html[html.index("<h2>duplicate") :]
    assert "(1 of 1 pairs)" in section
    assert section.index(shown(7, 0)) < section.index(shown(6, 0))  # the duplicate, then its original
    assert "0.0123" in section


def test_visible_fraction_histogram_and_thresholds(dataset):
    *_, html = dataset
    assert "views [0, 0.02): 2</title>" in html  # obj_002's two blank views
    assert "views [0.3, 0.32): 1</title>" in html
    assert "views [0.94, 0.96): 27</title>" in html
    assert "low_contrast_below 0.5</text>" in html
    assert "blank_below 0.05</text>" in html


def test_examples_are_a_bounded_stable_sample(tmp_path):
    flagged = [obj(i, view_flags=[["low_contrast"], [], []], visible=[0.2, 0.9, 0.9]) for i in range(40)]
    settings = dataclasses.replace(SETTINGS, extremes=3)
    lowest = sorted(range(40), key=lambda i: sample_key(f"obj_{i:03d}"))[:3]
    pages = []
    for name, split in (("one", [flagged]), ("three", [flagged[:7], flagged[7:25], flagged[25:]])):
        html = build_quality_page(write_triplets(tmp_path / name, split), None, "big", settings)
        assert html.count("<img") == 3  # extremes per flag, however many are flagged
        assert "(3 of 40 objects)" in html
        assert [i for i in range(40) if shown(i, 0) in html] == sorted(lowest)
        pages.append(html)
    assert pages[0] == pages[1]  # the sample does not depend on how the objects are sharded


def test_triplets_from_before_the_quality_flags(tmp_path):
    old_schema = pa.schema([f for f in triplet_schema(POINTS) if f.name not in QUALITY_COLUMNS])
    old_rows = [{k: v for k, v in obj(i).items() if k not in QUALITY_COLUMNS} for i in range(3)]
    old = write_triplets(tmp_path / "old", [old_rows], old_schema)
    html = build_quality_page(old, None, "old", SETTINGS, THRESHOLDS)
    assert "predate the quality flags" in html
    assert "triplets rule" in html
    assert "<img" not in html
    assert flag_row(html, "low_contrast")[1:] == ["0", "–", "0", "–"]

    # one old shard beside a new one, whose views partly lack the measure: counts from the new one only
    new_rows = [obj(10, view_flags=[["low_contrast"], [], []], visible=[0.2, None, 0.9])]
    paths = write_triplets(tmp_path / "mixed", [old_rows, new_rows], None)
    pq.write_table(pa.Table.from_pylist(old_rows, schema=old_schema), paths[0])
    html = build_quality_page(paths, None, "mixed", SETTINGS)
    assert "1 of the triplet shards (3 objects) predate" in html
    assert flag_row(html, "low_contrast")[1:] == ["1", "100.0 %", "1", "33.3 %"]
    assert "1 views have no visible fraction" in html
    assert shown(10, 0) in html


def test_write_quality_page(tmp_path, dataset):
    triplets, duplicates, html = dataset
    out = tmp_path / "report" / "quality.html"
    write_quality_page(triplets, duplicates, "demo", SETTINGS, out, THRESHOLDS)
    assert out.read_text(encoding="utf-8") == html


def test_every_flag_the_pipeline_writes_has_its_meaning_on_the_page(dataset):
    *_, html = dataset
    for flag in OBJECT_FLAGS:
        assert flag_row(html, flag)[0].strip(), flag
