"""End to end: the real Snakefile on the embedded demo set, driven through Snakemake."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, snakemake, write_config

from ulip2_pipeline.stages.points.stage import read_points

pytestmark = pytest.mark.e2e


def test_the_demo_set_runs_through_snakemake(demo_run):
    workdir, config, _ = demo_run
    results = workdir / "results" / "demo"
    manifest = pq.read_table(results / "manifest.parquet").to_pylist()
    source = config["datasets"]["demo"]["source"]
    assert len(manifest) == 6 * source["objects_per_class"] + source["broken_objects"]
    shards = sorted({row["shard"] for row in manifest})
    sampled, failed = [], []
    for shard in shards:
        points = read_points(results / "points" / f"{shard}.parquet")
        assert points["xyz"].shape[1:] == (10000, 3)
        sampled += list(points["uid"])
        failed += pq.read_table(results / "failures" / "points" / f"{shard}.parquet").column("uid").to_pylist()
    assert failed == ["broken_000.glb"]
    assert sorted(sampled + failed) == sorted(row["uid"] for row in manifest)
    rendered, render_failed = set(), []
    for shard in shards:
        rendered |= set(pq.read_table(results / "render" / f"{shard}.parquet").column("uid").to_pylist())
        render_failed += pq.read_table(results / "failures" / "render" / f"{shard}.parquet").column("uid").to_pylist()
    assert render_failed == ["broken_000.glb"]
    assert rendered == set(sampled)
    broken_shard = next(row["shard"] for row in manifest if row["uid"] == "broken_000.glb")
    assert (workdir / "logs" / "demo" / "render" / broken_shard / "broken_000.glb.log").exists()
    views = 3 * len(rendered)
    captions = [pq.read_table(results / "captions" / f"{s}.parquet") for s in shards]
    ranked = [pq.read_table(results / "ranked" / f"{s}.parquet") for s in shards]
    assert sum(t.num_rows for t in captions) == sum(t.num_rows for t in ranked) == views
    assert all(len(c) == 10 for t in captions for c in t.column("captions").to_pylist())
    assert all(len(k) == 1 for t in ranked for k in t.column("kept").to_pylist())
    assert (workdir / "logs" / "demo" / "points" / f"{shards[0]}.log").read_text().count("colour from") > 0
    # every shard job says how far it is: done / total, rate, time left
    for stage, unit in (("points", "objects"), ("render", "objects"), ("caption", "views"), ("rank", "views")):
        text = (workdir / "logs" / "demo" / stage / f"{shards[0]}.log").read_text()
        assert f"{stage} {shards[0]}: " in text, stage
        assert f" {unit} (100.0%)" in text, stage
        assert "done in" in text, stage


def test_the_demo_reaches_training_and_a_real_zero_shot_signal(demo_run):
    workdir, config, _ = demo_run
    run = config["train"]["run"]
    results = workdir / "results" / "demo"
    metrics = json.loads((results / "train" / run / "metrics.json").read_text())
    assert metrics["towers_unchanged"]
    assert metrics["epochs"] == config["train"]["epochs"]
    assert (results / "train" / run / "curve.csv").exists()
    assert (results / "train" / run / "checkpoint.pt").exists()
    zero_shot = json.loads((results / "eval" / run / "zero_shot.json").read_text())
    heldout = zero_shot["benchmarks"]["heldout"]
    assert zero_shot["retrieval"]["objects"] == heldout["samples"]
    print("held-out zero-shot:", heldout)
    assert heldout["samples"] >= 10
    # Trained on category text, scored on objects it never saw: far above chance.
    assert heldout["top1"] >= 2 * heldout["chance_top1"]


def test_a_second_run_does_nothing(demo_run):
    workdir, _, _ = demo_run
    result = snakemake(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_single_file_target_builds_only_that_shard(tmp_path):
    write_config(tmp_path, objects_per_class=3)
    snakemake(tmp_path, "results/demo/points/00001.parquet")
    built = sorted(p.name for p in (tmp_path / "results" / "demo" / "points").iterdir())
    assert built == ["00001.parquet"]


def test_one_dataset_is_one_config_flag_away(tmp_path):
    config = write_config(tmp_path, objects_per_class=1)
    config["datasets"]["tiny"] = {
        "source": {"kind": "demo", "objects_per_class": 1, "broken_objects": 0},
        "render_preset": "demo",
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "points", "--config", "only=tiny", "-n")
    output = result.stdout + result.stderr
    assert "results/tiny/manifest.parquet" in output
    assert "results/demo/" not in output


def test_the_eval_rule_scores_a_named_checkpoint_without_training(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "ulip2-pointbert.pt").write_bytes(b"released checkpoint")
    config["eval"].update(checkpoint=str(tmp_path / "ulip2-pointbert.pt"), checkpoint_format="ulip2")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(tmp_path, "eval", "-n").stdout
    assert "rule eval_run:" in output
    assert "ulip2-pointbert.pt" in output
    assert "rule train_run:" not in output


def test_a_bad_config_stops_the_run_naming_the_key(tmp_path):
    config = write_config(tmp_path)
    config["datasets"]["demo"]["shard_size"] = "large"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "key 'datasets.demo.shard_size': expected integer" in result.stdout + result.stderr


def test_snakemake_lint_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_the_demo_records_quality_and_a_filter_reruns_only_training_and_exports(demo_run):
    workdir, _, _ = demo_run
    results = workdir / "results" / "demo"
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary["quality"]) == {"objects", "views"}
    triplets = pq.read_table(results / "triplets" / "00000.parquet", columns=["views", "visible_fraction", "flags"])
    for views, fractions in zip(triplets.column("views").to_pylist(), triplets.column("visible_fraction").to_pylist()):
        assert len(fractions) == len(views)
        assert all(0.0 <= f <= 1.0 for f in fractions)
    assert (results / "duplicates.parquet").exists()
    assert (results / "report" / "quality.html").exists()
    result = snakemake(workdir, "-n", "--config", "quality={drop_views: [low_contrast], drop_duplicates: true}")
    jobs = result.stdout
    assert "rule train_run:" in jobs
    assert "rule export_ulip_shard:" in jobs
    for stage in ("render_shard", "caption_shard", "rank_shard", "triplets_shard", "embed_shard", "duplicates"):
        assert f"rule {stage}:" not in jobs, stage
