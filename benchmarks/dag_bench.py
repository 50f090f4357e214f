"""Scale benchmark: the dry run of the full DAG over a synthetic manifest of a million objects.

Writes a manifest of N objects (default 1,000,000) for a dataset named "big" (as the
manifest rule would), then times `snakemake -n` of the default target for it and
reports the peak memory of that process. shard_size is the lever: jobs = stages x shards.
Prints one JSON document. Usage: python benchmarks/dag_bench.py [--objects N] [--shard-sizes 1000,500]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ulip2_pipeline.failures import write_failures  # noqa: E402
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA, shard_name, shard_slices, write_manifest, write_slices  # noqa: E402


def synthetic_manifest(objects: int, shard_size: int, out: Path) -> int:
    uids = [f"obj{i:07d}" for i in range(objects)]
    table = pa.table(
        {
            "uid": uids,
            "source": [f"/data/big/{u}.glb" for u in uids],
            "sha256": ["0" * 64] * objects,
            "bytes": [1] * objects,
            "mtime_ns": [0] * objects,
            "category": [None] * objects,
            "shard": [shard_name(i // shard_size) for i in range(objects)],
        },
        schema=MANIFEST_SCHEMA,
    )
    write_manifest(table, out / "manifest.parquet")
    write_slices(shard_slices(table), out / "manifest.parquet")  # what the shard jobs read
    write_failures([], out / "failures" / "manifest.parquet")
    return -(-objects // shard_size)


def dry_run(objects: int, shard_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        (workdir / "meshes").mkdir()
        config["datasets"]["big"] = {
            "source": {"kind": "folder", "path": str(workdir / "meshes")},
            "shard_size": shard_size,
            "render_preset": "objaverse",
        }
        config["only"] = "big"
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        shards = synthetic_manifest(objects, shard_size, workdir / "results" / "big")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "-d",
                str(workdir),
                "-n",
                "--cores",
                "64",
                "--quiet",
                "rules",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if result.returncode != 0:
            raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
        jobs = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
        return {
            "objects": objects,
            "shard_size": shard_size,
            "shards": shards,
            "jobs": int(jobs.group(1)) if jobs else None,
            "dry_run_s": round(seconds, 1),
            "peak_memory_mb": round(max(peak_kib, before) / 1024, 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--shard-sizes", default="1000,500")
    args = parser.parse_args()
    results = [dry_run(args.objects, int(size)) for size in args.shard_sizes.split(",")]
    print(
        json.dumps(
            {
                "benchmark": "dag",
                "target": "all (every stage through eval)",
                "results": results,
                "goal": "dry run under 30 s and 2 GB for 1,000,000 objects",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
