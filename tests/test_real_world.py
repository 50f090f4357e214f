"""Meshes the project did not make, through `triplets`: pybullet_data's own files (obj+mtl+textures, stl, dae).

The top level of pybullet_data and its racecar meshes: same-stem files in two formats
(duck.obj / duck.dae, chassis.STL / chassis.dae, cone.obj / cone.dae), upper-case extensions
(wheel .STL), textures beside the meshes. The run must end without a failed job, every
object in a triplet or in a ledger row with a reason, and the counts must add up.
`benchmarks/collection_bench.py` runs the whole collection.
"""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import snakemake, write_config
from third_party import pybullet_data_dir

from ulip2_pipeline.accounting import FLAG_REASONS

pytestmark = pytest.mark.e2e

TOO_BIG_FOR_A_TEST = {"samurai_monastry.obj"}  # 10 MB; the benchmark takes it


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    source = pybullet_data_dir()
    workdir = tmp_path_factory.mktemp("real")
    root = workdir / "pybullet"
    root.mkdir()
    for path in source.iterdir():
        if path.is_file() and path.name not in TOO_BIG_FOR_A_TEST:
            shutil.copy2(path, root / path.name)
    shutil.copytree(source / "racecar" / "meshes", root / "racecar" / "meshes")
    config = write_config(workdir)
    config["datasets"] = {
        "pybullet": {
            "source": {"kind": "folder", "path": str(root), "category": "parent_dir"},
            "shard_size": 16,
            "render_preset": "demo",
        }
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "triplets", check=False)
    meshes = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".obj", ".stl", ".dae"))
    return workdir / "results" / "pybullet", result, meshes


def test_the_collection_runs_through_triplets_without_a_failed_job(real_run):
    results, result, meshes = real_run
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    summary = json.loads((results / "summary.json").read_text())
    print("pybullet subset:", json.dumps({k: summary[k] for k in ("objects_in", "triplets_out", "failures")}))
    assert summary["objects_in"] == len(meshes)
    assert summary["adds_up"]


def test_every_object_is_a_triplet_or_a_ledger_row_with_a_reason(real_run):
    results, _, meshes = real_run
    manifest = pq.read_table(results / "manifest.parquet").to_pylist()
    joined, left = set(), {}
    for shard in sorted({row["shard"] for row in manifest}):
        joined |= set(pq.read_table(results / "triplets" / f"{shard}.parquet").column("uid").to_pylist())
        ledger = pq.read_table(results / "failures" / "triplets" / f"{shard}.parquet").to_pylist()
        left.update({r["uid"]: r for r in ledger if r["reason"] not in FLAG_REASONS})  # flags leave nothing out
    assert joined | set(left) == {row["uid"] for row in manifest}
    assert not joined & set(left)
    assert all(
        r["reason"] in ("no_points", "no_views", "no_captions") and "left at the" in r["detail"] for r in left.values()
    )
    # same-stem files are two objects, and each format made it
    assert {"duck.obj", "duck.dae", "racecar__meshes__chassis.STL", "racecar__meshes__chassis.dae"} <= joined
    assert {u.rsplit(".", 1)[1].lower() for u in joined} == {"obj", "stl", "dae"}
    assert len(joined) >= 0.9 * len(meshes)
