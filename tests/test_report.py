"""The visual report: its pieces on synthetic shards, then the demo's report in a real browser."""

from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import snakemake
from PIL import Image

from ulip2_pipeline.config import default_config
from ulip2_pipeline.report import collect as collect_module
from ulip2_pipeline.report.collect import collect, kept_scores, read_objects, word_counts
from ulip2_pipeline.report.failures import failure_examples, failures_page
from ulip2_pipeline.report.html import esc, visible
from ulip2_pipeline.report.pages import build_dataset_pages
from ulip2_pipeline.report.splat import splat
from ulip2_pipeline.report.svg import histogram, line_chart, nice_ticks
from ulip2_pipeline.report.training import training_page
from ulip2_pipeline.settings import ReportSettings
from ulip2_pipeline.stages.render.cameras import orbit_cameras
from ulip2_pipeline.stages.triplets import triplet_schema

POINTS = 400
VIEWS = 3
CAPTIONS = 4
RESOLUTION = 48
OBJECT_COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 30)]


# --- synthetic shards: the triplets and ranked schemas, small sizes ---


def png(colour, size=RESOLUTION) -> bytes:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste(colour, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def sphere_points(rng, n=POINTS, radius=0.6):
    xyz = rng.normal(size=(n, 3))
    return (radius * xyz / np.linalg.norm(xyz, axis=1, keepdims=True)).astype(np.float32)


def object_captions(rng, index):
    """CAPTIONS captions per view, some empty, and their scores."""
    captions, scores = [], []
    for view in range(VIEWS):
        texts = [
            ("" if (index + view + c) % 7 == 0 else " ".join(["word"] * (1 + (index + c) % 5)) + f" {index}")
            for c in range(CAPTIONS)
        ]
        captions.append(texts)
        scores.append([float(s) for s in rng.uniform(-0.2, 0.5, CAPTIONS).astype(np.float32)])
    return captions, scores


def best_non_empty(texts, scores):
    candidates = [i for i, t in enumerate(texts) if t]
    return [max(candidates, key=lambda i: (scores[i], -i))] if candidates else []


def write_shards(root: Path, sizes: list[int], start: int = 0, uid_order=None):
    """Triplet and ranked shards holding objects start.., ``sizes[i]`` in shard i; returns (triplets, ranked)."""
    rng = np.random.default_rng(0)
    cameras = orbit_cameras(VIEWS, 20.0, 40.0, RESOLUTION, "y")
    (root / "triplets").mkdir(parents=True, exist_ok=True)
    (root / "ranked").mkdir(parents=True, exist_ok=True)
    indices = list(range(start, start + sum(sizes)))
    if uid_order is not None:
        indices = uid_order
    triplet_paths, ranked_paths, cursor = [], [], 0
    for shard, size in enumerate(sizes):
        rows, ranked = [], []
        for index in indices[cursor : cursor + size]:
            rng = np.random.default_rng(index)
            uid = f"obj_{index:04d}"
            captions, scores = object_captions(rng, index)
            top = [best_non_empty(t, s) for t, s in zip(captions, scores)]
            kept = [[captions[v][i] for i in top[v]] for v in range(VIEWS)]
            colour = OBJECT_COLOURS[index % len(OBJECT_COLOURS)]
            rows.append(
                {
                    "uid": uid,
                    "category": f"class_{index % 3}",
                    "xyz": sphere_points(rng).tolist(),
                    "rgb": [list(colour)] * POINTS,
                    "images": [{"bytes": png(colour), "path": f"{uid}/{v:03d}.png"} for v in range(VIEWS)],
                    "views": list(range(VIEWS)),
                    "azimuth_deg": [c.azimuth_deg for c in cameras],
                    "elevation_deg": [c.elevation_deg for c in cameras],
                    "intrinsics": [c.intrinsics.reshape(-1).tolist() for c in cameras],
                    "world_to_camera": [c.world_to_camera.reshape(-1).tolist() for c in cameras],
                    "depth": None,
                    "center": [0.0, 0.0, 0.0],
                    "scale": 1.0,
                    "up_axis": "y",
                    "captions": captions,
                    "caption_scores": scores,
                    "kept": kept,
                }
            )
            ranked += [
                {
                    "uid": uid,
                    "view": v,
                    "captions": captions[v],
                    "scores": scores[v],
                    "top_k": top[v],
                    "kept": kept[v],
                    "model": "test",
                }
                for v in range(VIEWS)
            ]
        cursor += size
        name = f"{shard:05d}.parquet"
        pq.write_table(
            pa.Table.from_pylist(rows, schema=triplet_schema(POINTS)), root / "triplets" / name, row_group_size=4
        )
        pq.write_table(pa.Table.from_pylist(ranked, schema=RANKED_SCHEMA), root / "ranked" / name)
        triplet_paths.append(root / "triplets" / name)
        ranked_paths.append(root / "ranked" / name)
    return triplet_paths, ranked_paths


RANKED_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("view", pa.int16(), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("top_k", pa.list_(pa.int16()), nullable=False),
        pa.field("kept", pa.list_(pa.string()), nullable=False),
        pa.field("model", pa.string()),
    ]
)


def all_ranked_rows(paths):
    return [row for p in paths for row in pq.read_table(p).to_pylist()]


# --- text, charts ---


def test_captions_full_of_control_characters_become_visible_and_valid_xml():
    noisy = "a\x16b\x08<c>&\x7f\ud800"
    assert visible("tab\tand\nnewline") == "tab\tand\nnewline"
    assert visible(noisy) == "a\u2416b\u2408<c>&\u2421?"
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{esc(noisy)}</text></svg>'
    assert ET.fromstring(svg)[0].text == "a\u2416b\u2408<c>&\u2421?"


def test_charts_are_well_formed_svg_with_one_bar_per_non_empty_bin():
    chart = histogram([0, 1, 2, 3], {"a": [2, 0, 5], "b": [1, 1, 1]}, "title <x>", "x")
    root = ET.fromstring(chart)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find("{*}title") is not None]
    assert len(bars) == 2 + 3
    tallest = max(bars, key=lambda r: float(r.get("height")))
    assert tallest.find("{*}title").text.endswith(": 5")
    lines = ET.fromstring(line_chart([1, 2, 3, 4], {"loss": [3.0, 2.0, None, 1.0]}, "t", "epoch", "loss"))
    assert len(list(lines.iter("{http://www.w3.org/2000/svg}polyline"))) == 2  # the None splits the line
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.23, 0.41, 6) == pytest.approx([-0.2, 0.0, 0.2, 0.4])


# --- the splat renderer ---


def simple_camera(distance=3.0, focal=32.0, size=64):
    world_to_camera = np.eye(4)
    world_to_camera[2, 3] = distance  # the origin lies `distance` in front of the camera
    intrinsics = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    return world_to_camera, intrinsics


def test_a_point_lands_where_the_camera_projects_it():
    w2c, k = simple_camera()
    xyz = np.array([[0.0, 0.0, 0.0], [0.75, 0.0, 0.0], [0.0, 0.0, -5.0]], np.float32)  # the last: behind the camera
    rgb = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8)
    image = splat(xyz, rgb, w2c, k, 64, 64, size=64, radius=0, shade=0)
    assert tuple(image[32, 32]) == (255, 0, 0)
    assert tuple(image[32, 32 + 8]) == (0, 0, 255)  # 32 * 0.75 / 3 = 8 pixels to the right
    assert (image.reshape(-1, 3) != 255).any(axis=1).sum() == 2  # nothing else drawn
    half = splat(xyz, rgb, w2c, k, 64, 64, size=32, radius=0, shade=0)  # scaled to the thumbnail
    assert half.shape == (32, 32, 3)
    assert tuple(half[16, 16]) == (255, 0, 0)
    assert tuple(half[16, 20]) == (0, 0, 255)


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_the_nearest_point_wins_whatever_the_order(order):
    w2c, k = simple_camera()
    xyz = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], np.float32)[order]  # z -1 is nearer the camera
    rgb = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)[order]
    image = splat(xyz, rgb, w2c, k, 64, 64, size=64, radius=2, shade=0)
    assert tuple(image[32, 32]) == (255, 0, 0)
    assert (image.reshape(-1, 3) == (255, 0, 0)).all(axis=1).sum() == 25


@pytest.mark.parametrize("up", ["y", "z"])
def test_the_up_axis_is_up_in_the_preview(up):
    """Through the render stage's own cameras, a point on the dataset's up axis is drawn above the centre."""
    axis = {"y": [0, 0.8, 0], "z": [0, 0, 0.8]}[up]
    xyz = np.array([[0, 0, 0], axis], np.float32)
    rgb = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    for camera in orbit_cameras(4, 20.0, 40.0, 64, up):
        image = splat(xyz, rgb, camera.world_to_camera, camera.intrinsics, 64, 64, size=64, radius=0, shade=0)
        rows, cols = np.nonzero((image == (255, 0, 0)).all(axis=2))
        assert len(rows) == 1
        assert rows[0] < 32 - 10
        assert abs(cols[0] - 32) <= 1


# --- the streaming pass ---


def test_kept_scores_follow_top_k_not_the_maximum():
    table = pa.Table.from_pylist(
        [
            {
                "uid": "a",
                "view": 0,
                "captions": ["x", "y", "z"],
                "scores": [0.9, 0.1, 0.3],
                "top_k": [2],
                "kept": ["z"],
                "model": "m",
            },
            {"uid": "a", "view": 1, "captions": ["", ""], "scores": [0.5, 0.4], "top_k": [], "kept": [], "model": "m"},
            {"uid": "b", "view": 0, "captions": ["p"], "scores": [0.2], "top_k": [0], "kept": ["p"], "model": "m"},
        ],
        schema=RANKED_SCHEMA,
    )
    scores = kept_scores(table)
    assert scores[0] == pytest.approx(0.3)
    assert np.isnan(scores[1])
    assert scores[2] == pytest.approx(0.2)
    assert kept_scores(table.slice(1)).tolist()[1] == pytest.approx(0.2)  # sliced lists keep their offsets


def test_words_are_runs_of_non_whitespace():
    captions = ["a  b", "", " x ", "one\ttwo\nthree", "\u00e9t\u00e9 \u2416"]
    assert word_counts(pa.array(captions)).tolist() == [len(c.split()) for c in captions] == [2, 0, 1, 3, 2]


def test_statistics_and_extremes_equal_a_brute_force_reading(tmp_path):
    triplets, ranked = write_shards(tmp_path, [7, 0, 9, 5])  # an empty shard in the middle
    digest = collect(triplets, ranked, sample_size=5, extremes=3)
    rows = all_ranked_rows(ranked)
    captions = [c for r in rows for c in r["captions"]]
    assert digest.objects == 21
    assert digest.views == 21 * VIEWS
    assert digest.captions == len(captions)
    assert digest.empty_captions == captions.count("")
    assert digest.caption_words == Counter(len(c.split()) for c in captions if c)
    assert digest.empty_per_view == Counter(r["captions"].count("") for r in rows)
    kept = sorted((r["scores"][r["top_k"][0]], r["uid"], r["view"]) for r in rows if r["top_k"])
    assert [(c.score, c.uid, c.view) for c in digest.lowest[:3]] == [pytest.approx(k) for k in kept[:3]]
    assert [(c.score, c.uid, c.view) for c in digest.highest[:3]] == [pytest.approx(k) for k in kept[::-1][:3]]
    assert digest.mean_kept_score == pytest.approx(np.mean([k[0] for k in kept]))
    edges, counts = digest.score_histogram(bins=10)
    assert sum(counts["all captions"]) == len(captions)
    assert sum(counts["kept"]) == len(kept)
    assert edges[0] <= min(s for r in rows for s in r["scores"])
    assert edges[-1] >= max(k[0] for k in kept)
    assert len(digest.sample) == 5
    for uid, _ in digest.sample:  # the kept caption of every sampled view is recorded
        assert set(digest.sample_views[uid]) == set(range(VIEWS))


def test_the_sample_does_not_depend_on_how_objects_are_sharded(tmp_path):
    one = collect(*write_shards(tmp_path / "one", [30]), sample_size=6, extremes=0)
    order = list(np.random.default_rng(1).permutation(30))
    many = collect(*write_shards(tmp_path / "many", [4, 11, 0, 15], uid_order=order), sample_size=6, extremes=0)
    assert [uid for uid, _ in one.sample] == [uid for uid, _ in many.sample]
    expected = sorted(sorted((f"obj_{i:04d}" for i in range(30)), key=collect_module.sample_key)[:6])
    assert [uid for uid, _ in one.sample] == expected


def test_objects_are_read_from_only_the_row_groups_that_hold_them(tmp_path):
    triplets, _ = write_shards(tmp_path, [10, 10])
    rows = read_objects(
        triplets, {"00001": {"obj_0013"}, "00000": {"obj_0002", "missing"}}, ["uid", "views", "xyz", "rgb"]
    )
    assert sorted(rows) == ["obj_0002", "obj_0013"]
    assert rows["obj_0013"]["xyz"].shape == (POINTS, 3)
    assert rows["obj_0013"]["views"] == list(range(VIEWS))
    assert tuple(rows["obj_0013"]["rgb"][0]) == OBJECT_COLOURS[13 % len(OBJECT_COLOURS)]


# --- the pages ---


def object_rows_in(page: str) -> int:
    return page.count('<th class="obj">')


def test_pages_stay_the_same_size_as_the_dataset_grows(tmp_path):
    settings = report_settings(sample_objects=5, extremes=2, point_objects=2, point_views=2, thumbnail_px=48)
    small = build_dataset_pages(*write_shards(tmp_path / "small", [6, 6]), "small", settings)
    large = build_dataset_pages(*write_shards(tmp_path / "large", [40] * 6), "large", settings)
    for name in small:
        assert len(large[name]) < 1.3 * len(small[name]) + 2000, name
    assert object_rows_in(small["sheet"]) == object_rows_in(large["sheet"]) == 5
    assert "5 of 240 objects" in large["sheet"]
    assert large["points"].count("points, camera of view") == 2 * 2
    assert large["captions"].count("<details>") == 2 * 2


def test_the_contact_sheet_shows_each_view_with_its_kept_caption_and_score(tmp_path):
    triplets, ranked = write_shards(tmp_path, [8])
    pages = build_dataset_pages(triplets, ranked, "toy", report_settings(sample_objects=3, extremes=2))
    digest = collect(triplets, ranked, 3, 2)
    rows = {(r["uid"], r["view"]): r for r in all_ranked_rows(ranked)}
    for uid, _ in digest.sample:
        assert esc(uid) in pages["sheet"]
        for view in range(VIEWS):
            row = rows[(uid, view)]
            if row["top_k"]:
                assert f"CLIP {row['scores'][row['top_k'][0]]:.3f}" in pages["sheet"]
    lowest = min((r for r in rows.values() if r["top_k"]), key=lambda r: r["scores"][r["top_k"][0]])
    first_card = pages["captions"].split("Lowest-scored")[1].split('class="card')[1]
    assert f"<b>{lowest['uid']}</b> · view {lowest['view']}" in first_card
    assert pages["sheet"].count("data:image/jpeg;base64,") == 3 * VIEWS


def test_empty_shards_still_give_every_page(tmp_path):
    pages = build_dataset_pages(*write_shards(tmp_path, [0, 0]), "empty", report_settings())
    assert set(pages) == {"sheet", "captions", "histograms", "points"}
    assert "no triplets yet" in pages["sheet"]
    assert "no kept captions" in pages["captions"]
    assert build_dataset_pages([], [], "none", report_settings())["histograms"].count("<svg") == 3


def report_settings(**overrides) -> ReportSettings:
    return ReportSettings.from_config({**default_config()["report"], **overrides})


def failure_file(path: Path, rows: list[dict]):
    schema = pa.schema([(n, pa.string()) for n in ("uid", "stage", "source", "reason", "detail")])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_the_failures_page_counts_by_stage_and_reason_with_capped_examples(tmp_path):
    def row(i, stage, reason):
        return {
            "uid": f"u{i}",
            "stage": stage,
            "source": f"/data/u{i}.glb",
            "reason": reason,
            "detail": f"error {i} <boom>\n" + "log line\n" * (500 if i == 0 else 1),
        }

    paths = [
        failure_file(tmp_path / "a.parquet", [row(i, "points", "unreadable") for i in range(5)]),
        failure_file(tmp_path / "b.parquet", [row(9, "render", "timeout")]),
        failure_file(tmp_path / "c.parquet", []),
    ]
    examples = failure_examples(paths, per_reason=2)
    assert {k: len(v) for k, v in examples.items()} == {("points", "unreadable"): 2, ("render", "timeout"): 1}
    stages = {
        "manifest": (20, 20, {}),
        "points": (20, 15, {"unreadable": 5}),
        "render": (15, 14, {"timeout": 1}),
        "caption": (14, 14, {}),
        "rank": (14, 14, {}),
        "triplets": (14, 14, {}),
    }
    summary = {
        "objects_in": 20,
        "triplets_out": 14,
        "objects_failed": 6,
        "shards": ["00000"],
        "stages": {k: {"in": a, "out": b, "failed": f, "flagged": {}} for k, (a, b, f) in stages.items()},
        "failures": {"render": {"timeout": 1}, "points": {"unreadable": 5}},
        "flags": {"render": {"missing_texture": 2}},
    }
    text = failures_page("toy", summary, examples)
    assert "70.0 %" in text
    assert "(2 of 5)" in text
    assert "(1 of 1)" in text
    assert "Objects through the stages" in text
    assert "missing_texture" in text
    assert text.index("points · unreadable") < text.index("render · timeout")  # pipeline order
    assert "error 0 &lt;boom&gt;" in text
    assert "characters left out" in text
    clean = failures_page("toy", {"objects_in": 3, "triplets_out": 3, "failures": {}}, {})
    assert "No failures" in clean


METRICS = {
    "epochs": 3,
    "steps": 6,
    "towers_unchanged": True,
    "trainable_parameters": 1000,
    "encoder": {"width": 64},
    "history": [
        {
            "epoch": e,
            "loss": 3.0 - e,
            "loss_text": 1.5,
            "loss_image": 1.5,
            "acc_text": 0.1 * e,
            "acc_image": 0.2,
            "lr": 0.001,
            "logit_scale": 14.0,
        }
        for e in (1, 2, 3)
    ],
}


def zero_shot(**extra):
    return {
        "text_tower": "clip",
        "benchmarks": {
            "heldout": {
                "top1": 75.0,
                "top5": 95.0,
                "class_mean": 80.28,
                "samples": 20,
                "classes": 3,
                "chance_top1": 33.33,
                "format": "demo_heldout",
                **extra,
            },
            "lvis": {"error": "no samples"},
        },
    }


def test_the_training_page_draws_the_curves_and_says_when_the_confusion_matrix_is_missing():
    text = training_page("toy", "run1", METRICS, zero_shot())
    assert text.count("<polyline") == 3 + 2 + 1 + 1
    assert "75.0" not in text
    assert ">75<" in text
    assert "no samples" in text
    assert 'Confusion matrix missing: this zero_shot.json has no <code>benchmarks["heldout"]["confusion"]' in text


def test_the_confusion_matrix_has_true_rows_and_predicted_columns():
    confusion = {"classes": ["cat", "dog", "cow"], "matrix": [[5, 1, 0], [0, 4, 2], [0, 0, 3]]}
    text = training_page(
        "toy",
        "run1",
        METRICS,
        zero_shot(confusion=confusion, per_class_top1={"cat": 83.33, "dog": 66.67, "cow": 100.0}),
    )
    assert "Confusion matrix missing" not in text
    table = text.split('<table class="cm">')[1].split("</table>")[0]
    assert 'title="dog predicted as cow: 2">2</td>' in table
    assert [row.count("<td") for row in table.split("<tr>")[2:]] == [4, 4, 4]
    assert ">83.33<" in text
    classes = [f"c{i}" for i in range(60)]
    matrix = np.eye(60, dtype=int).tolist()
    matrix[7][3] = 9
    large = training_page("toy", "run1", METRICS, zero_shot(confusion={"classes": classes, "matrix": matrix}))
    assert '<table class="cm">' not in large
    assert "60 classes: too many" in large
    assert "<td>c7</td><td>c3</td><td class=num>9</td>" in large


RETRIEVAL = {
    "text": {
        "r1": 42.5,
        "r5": 80.0,
        "r10": 92.5,
        "median_rank": 2.0,
        "mean_rank": 3.41,
        "samples": 40,
        "chance_r1": 2.5,
    },
    "image": {
        "r1": 12.25,
        "r5": 37.5,
        "r10": 55.0,
        "median_rank": 8.5,
        "mean_rank": 11.07,
        "samples": 40,
        "chance_r1": 2.5,
    },
    "objects": 40,
    "skipped": 3,
    "skipped_reasons": {"no embedding row": 2, "no kept caption": 1},
}


def test_the_training_page_shows_held_out_retrieval_or_says_why_not():
    text = training_page("toy", "run1", METRICS, {**zero_shot(), "retrieval": RETRIEVAL})
    section = text.split("<h2>Held-out retrieval</h2>")[1].split("<h2>")[0]
    rows = section.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    cells = [[c.split(">", 1)[1] for c in row.split("</td>")[:-1]] for row in rows]
    assert cells == [
        ["3D → text", "42.5", "80", "92.5", "2", "3.41", "2.5", "40"],
        ["3D → image", "12.25", "37.5", "55", "8.5", "11.07", "2.5", "40"],
    ]
    assert "3 held-out objects left out (no embedding row: 2, no kept caption: 1)." in section
    assert "Held-out retrieval missing" not in text

    missing = training_page("toy", "run1", METRICS, zero_shot())
    section = missing.split("<h2>Held-out retrieval</h2>")[1].split("<h2>")[0]
    assert "<table" not in section
    assert "Held-out retrieval missing: this zero_shot.json has no <code>retrieval</code>" in section

    error = {"error": "fewer than 2 held-out objects", "objects": 1, "skipped": 0, "skipped_reasons": {}}
    failed = training_page("toy", "run1", METRICS, {**zero_shot(), "retrieval": error})
    section = failed.split("<h2>Held-out retrieval</h2>")[1].split("<h2>")[0]
    assert "<table" not in section
    assert "No held-out retrieval: fewer than 2 held-out objects (1 with points and embeddings)." in section
    assert "No held-out retrieval for this run." in training_page("toy", "run1", METRICS, None)


# --- end to end: the demo's report, and a real browser ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = ["contact_sheet", "caption_extremes", "caption_statistics", "point_clouds", "failures"]


@pytest.fixture(scope="module")
def demo_report(demo_run):
    workdir, config, _ = demo_run
    result = snakemake(workdir, "--report", "report.html")
    return workdir, config, workdir / "report.html", result


@pytest.mark.e2e
def test_the_demo_run_makes_every_page_and_snakemake_embeds_them(demo_report):
    workdir, config, report, result = demo_report
    pages = workdir / "results" / "demo" / "report"
    for name in PAGES + [f"training_{config['train']['run']}"]:
        text = (pages / f"{name}.html").read_text()
        assert "<!doctype html>" in text, name
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name  # renders offline: nothing to fetch
    sheet = (pages / "contact_sheet.html").read_text()
    assert object_rows_in(sheet) == config["report"]["sample_objects"]
    views = config["render_presets"][config["datasets"]["demo"]["render_preset"]]["views"]
    assert sheet.count("data:image/jpeg") == config["report"]["sample_objects"] * views
    assert "unreadable" in (pages / "failures.html").read_text()
    html = report.read_text()
    for name in PAGES:
        assert f"results/demo/report/{name}.html" in html
    size = report.stat().st_size
    print(
        f"report.html: {size / 1e6:.2f} MB; pages: "
        + ", ".join(f"{p.name} {p.stat().st_size / 1e3:.0f} kB" for p in sorted(pages.iterdir()))
    )
    assert size < 8e6


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-3000:]}"
    return result


# Opens a dataset's contact sheet in Snakemake's single-page app, as a click on it would.
OPEN_CONTACT_SHEET = """<script>
(function openSheet() {
  if (typeof app === "undefined" || !app) { setTimeout(openSheet, 50); return; }
  var category = Object.keys(categories)[0];
  var subcategory = Object.keys(categories[category]).sort()[0];
  var path = categories[category][subcategory].find(function (p) { return p.indexOf("contact_sheet") >= 0; });
  app.setView({navbarMode: "subcategory", category: category, subcategory: subcategory, content: "html",
               contentPath: results[path].data_uri, resultPath: path});
})();
</script>"""


def with_contact_sheet_open(report: Path, out: Path) -> Path:
    html = report.read_text()
    end = html.rindex("</body>")
    out.write_text(html[:end] + OPEN_CONTACT_SHEET + html[end:])
    return out


def colourful_pixels(png_path: Path, left_fraction: float = 0.0) -> tuple[int, float, int]:
    """(distinct colours, non-white fraction, strongly saturated pixels) right of ``left_fraction`` of the width."""
    pixels = np.asarray(Image.open(png_path).convert("RGB")).astype(np.int32)
    pixels = pixels[:, int(pixels.shape[1] * left_fraction) :]
    flat = pixels.reshape(-1, 3)
    distinct = len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))
    non_white = float((flat < 245).any(axis=1).mean())
    saturated = int(((flat.max(axis=1) - flat.min(axis=1)) > 90).sum())
    return distinct, non_white, saturated


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_the_report_renders_in_a_real_browser(demo_report, tmp_path):
    workdir, _, report, _ = demo_report
    # The app itself: JavaScript ran, the loading screen is gone, the workflow description and the dataset are there.
    dom = chromium(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert 'id="loading-screen" style="display: none;"' in dom, dom[-3000:]
    assert "Seeing a dataset." in dom
    assert "Results" in dom
    # A dataset's contact sheet opened in the app: the navbar lists the pages, the sheet fills the content pane.
    opened = with_contact_sheet_open(report, tmp_path / "opened.html")
    dom = chromium(tmp_path, opened.as_uri(), "--dump-dom").stdout
    assert "contact sheet" in dom
    assert "lowest and highest scores" in dom
    assert "statistics" in dom
    assert '<iframe src="data:text/html' in dom, dom[-3000:]
    shot = tmp_path / "report.png"
    chromium(tmp_path, opened.as_uri(), f"--screenshot={shot}", "--window-size=1280,800")
    distinct, non_white, saturated = colourful_pixels(shot, left_fraction=0.35)
    print(f"contact sheet in the app: {distinct} colours, {non_white:.0%} non-white, {saturated} saturated pixels")
    assert distinct > 2000
    assert non_white > 0.1
    assert saturated > 1500
    # Each page on its own, as a browser parses it.
    pages = workdir / "results" / "demo" / "report"
    sections = {
        "contact_sheet": ["demo: contact sheet", "CLIP "],
        "caption_extremes": ["Lowest-scored kept", "Highest-scored kept"],
        "caption_statistics": ["<svg", "empty captions"],
        "point_clouds": ["points, same camera"],
        "failures": ["Where objects left, and why", "broken_000"],
    }
    for name, expected in sections.items():
        dom = chromium(tmp_path, (pages / f"{name}.html").as_uri(), "--dump-dom").stdout
        for text in expected:
            assert text in dom, (name, text)
