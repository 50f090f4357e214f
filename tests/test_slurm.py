"""The demo workflow submitted through profiles/slurm to a real one-node SLURM, compared with a local run."""

import re

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, snakemake
from slurm_cluster import OneNodeSlurm, unavailable_reason

pytestmark = pytest.mark.slurm

REASON = unavailable_reason()
STAGES = ("points", "render", "captions", "ranked", "triplets")


def tiny_config(workdir):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    demo = config["datasets"]["demo"]
    demo["source"].update(objects_per_class=1, broken_objects=0)
    demo["shard_size"] = 4
    config["render_presets"]["demo"].update(views=2, resolution=32, samples=2)
    config["train"].update(epochs=2, batch_size=2, holdout_fraction=0.0)
    config["eval"]["benchmarks"] = []
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def memory_overrides():
    """The profile asks for cluster-sized memory; this node has 16 GB."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    return ["--set-resources", *[f"{rule}:mem_mb=1000" for rule in profile["set-resources"]]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    slurm = OneNodeSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield slurm
    slurm.stop()


def test_the_demo_runs_through_the_scheduler_and_matches_a_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for workdir in (local, remote):
        workdir.mkdir()
        tiny_config(workdir)
    snakemake(local)
    result = snakemake(
        remote,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--jobs",
        "4",
        *memory_overrides(),
        env=cluster.env,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + cluster.log_tail()
    job_ids = set(re.findall(r"SLURM jobid (\d+)", output))
    assert len(job_ids) >= 10, output[-3000:]
    caption_log = (remote / "logs" / "demo" / "caption" / "00000.log").read_text()
    assert re.search(r"SLURM_JOB_ID=(\d+)", caption_log).group(1) in job_ids
    assert "CUDA_VISIBLE_DEVICES=0" in caption_log  # the GPU rule was given the node's GPU
    points_log = (remote / "logs" / "demo" / "points" / "00000.log").read_text()
    assert "SLURM_JOB_ID=" in points_log
    assert "CUDA_VISIBLE_DEVICES" not in points_log
    for stage in STAGES:
        for path in sorted((local / "results" / "demo" / stage).glob("*.parquet")):
            assert pq.read_table(remote / "results" / "demo" / stage / path.name).equals(pq.read_table(path)), path
