"""Growing a dataset costs only its new shards; throughput knobs rerun nothing (Snakemake end to end)."""

import re

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import snakemake, write_config

from ulip2_pipeline.sources.demo import build_object

pytestmark = pytest.mark.e2e

PER_SHARD = ("points", "render", "captions", "ranked", "triplets")
TARGET = "train"  # every stage and the training; the exports and report pages add minutes and no rerun rules


def jobs_run(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job Snakemake reports in ``output``."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if match:
            wildcards = re.search(r"wildcards: ([^\n]*)", block)
            jobs.append((match.group(1), wildcards.group(1) if wildcards else ""))
    return jobs


def add_object(root, cls, index):
    name, data = build_object(cls, index, seed=0)
    (root / cls).mkdir(parents=True, exist_ok=True)
    (root / cls / name).write_bytes(data)
    return f"{cls}__{name}"


def output_times(results):
    return {
        p.relative_to(results): p.stat().st_mtime_ns for stage in PER_SHARD for p in (results / stage).glob("*.parquet")
    }


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grow")
    root = workdir / "meshes"
    for cls in ("mug", "table", "bottle", "crate", "ball", "cone"):
        add_object(root, cls, 0)
    config = write_config(workdir)
    config["datasets"] = {
        "grow": {
            "source": {"kind": "folder", "path": str(root), "category": "parent_dir"},
            "shard_size": 2,
            "render_preset": "demo",
        }
    }
    config["train"].update(epochs=2, holdout_fraction=0.0)
    config["eval"]["benchmarks"] = []
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, TARGET)
    results = workdir / "results" / "grow"
    before = output_times(results)
    new_uid = add_object(root, "cone", 1)
    unnoticed = snakemake(workdir, TARGET, "-n")
    rescan = snakemake(workdir, TARGET, "--forcerun", "manifest")
    return {
        "workdir": workdir,
        "results": results,
        "before": before,
        "after": output_times(results),
        "new_uid": new_uid,
        "unnoticed": unnoticed.stdout + unnoticed.stderr,
        "rescan": jobs_run(rescan.stdout + rescan.stderr),
    }


def test_the_first_run_made_three_shards(grown):
    assert {p.stem for p in grown["before"]} == {"00000", "00001", "00002"}


def test_a_folder_is_rescanned_on_request_only(grown):
    assert "Nothing to be done" in grown["unnoticed"]


def test_one_added_object_costs_exactly_one_new_shard(grown):
    per_shard = [(rule, re.search(r"shard=(\d+)", wc).group(1)) for rule, wc in grown["rescan"] if "shard=" in wc]
    assert {shard for _, shard in per_shard} == {"00003"}, per_shard
    assert {rule for rule, _ in per_shard} >= {
        "points_shard",
        "render_shard",
        "caption_shard",
        "rank_shard",
        "triplets_shard",
        "embed_shard",
    }
    before, after = grown["before"], grown["after"]
    assert {k: after[k] for k in before} == before  # not one old shard file was rewritten
    assert sorted(str(k) for k in set(after) - set(before)) == [f"{s}/00003.parquet" for s in sorted(PER_SHARD)]
    assert pq.read_table(grown["results"] / "triplets" / "00003.parquet").column("uid").to_pylist() == [
        grown["new_uid"]
    ]


def test_throughput_knobs_rerun_nothing(grown):
    workdir = grown["workdir"]
    knobs = {
        "caption": {"batch_size": 3, "threads": 1, "device": "cpu"},
        "rank": {"batch_size": 2, "threads": 1, "device": "cpu"},
        "embed": {"batch_size": 5, "threads": 1, "device": "cpu"},
        "train": {"workers": 1, "threads": 1, "device": "cpu"},
        "render_presets": {"demo": {"threads": 1}},
    }
    (workdir / "knobs.yaml").write_text(yaml.safe_dump(knobs))
    result = snakemake(workdir, TARGET, "-n", "--configfile", str(workdir / "config.yaml"), str(workdir / "knobs.yaml"))
    assert "Nothing to be done" in result.stdout + result.stderr, jobs_run(result.stdout + result.stderr)


def test_a_caption_setting_change_retrains_from_scratch(grown):
    workdir = grown["workdir"]
    (workdir / "captions.yaml").write_text(yaml.safe_dump({"caption": {"seed": 7}}))
    result = snakemake(workdir, TARGET, "--configfile", str(workdir / "config.yaml"), str(workdir / "captions.yaml"))
    rules = {rule for rule, _ in jobs_run(result.stdout + result.stderr)}
    assert {"caption_shard", "rank_shard", "triplets_shard", "embed_shard", "train_run"} <= rules
    assert not rules & {"points_shard", "render_shard"}
    train_log = (workdir / "logs" / "grow" / "train" / "demo-category.log").read_text()
    last_attempt = train_log.rsplit("===== attempt started", 1)[1]
    assert "belongs to another run; training starts from epoch 0" in last_attempt
    assert "triplets/00000.parquet" in last_attempt  # the log says what changed
    assert "resumed from" not in last_attempt
