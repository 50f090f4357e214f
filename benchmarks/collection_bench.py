"""A real third-party collection through `triplets`: every mesh of the pybullet wheel's pybullet_data.

About 1,200 OBJ (with MTL and textures), STL and DAE files written by other people's
tools, same-stem files among them. Runs the workflow as a user would (a folder
source, small renders to keep it short) and prints JSON: objects in, triplets out,
failures by stage and reason, failed jobs, and the time taken.

    python benchmarks/collection_bench.py               # the whole collection
    python benchmarks/collection_bench.py --limit 100   # the first 100 files (by path)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from third_party import pybullet_data_dir  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "collection"
EXTENSIONS = ["obj", "stl", "dae"]


def collection(limit: int | None) -> Path:
    """pybullet_data itself, or a folder of links to its first ``limit`` mesh files (with their folders' files)."""
    source = pybullet_data_dir()
    if limit is None:
        return source
    meshes = sorted(p for p in source.rglob("*") if p.suffix.lower().lstrip(".") in EXTENSIONS)[:limit]
    root = OUT / f"first-{limit}"
    shutil.rmtree(root, ignore_errors=True)
    for folder in sorted({m.parent for m in meshes}):
        target = root / folder.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, target, dirs_exist_ok=True)  # textures and MTL files come along
    for path in root.rglob("*"):
        if (
            path.is_file()
            and path.suffix.lower().lstrip(".") in EXTENSIONS
            and source / path.relative_to(root) not in meshes
        ):
            path.unlink()
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    root = collection(args.limit)
    workdir = OUT / ("whole" if args.limit is None else f"run-{args.limit}")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"] = {
        "pybullet": {
            "source": {"kind": "folder", "path": str(root), "extensions": EXTENSIONS, "category": "parent_dir"},
            "shard_size": 64,
            "render_preset": "demo",
        }
    }
    config["render_presets"]["demo"].update(views=3, resolution=64, samples=4)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "--cores",
            str(args.cores),
            "--keep-going",
            "triplets",
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    output = run.stdout + run.stderr
    summary_path = workdir / "results" / "pybullet" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    print(
        json.dumps(
            {
                "collection": str(root),
                "files": summary.get("objects_in"),
                "exit_status": run.returncode,
                "failed_jobs": sorted(set(re.findall(r"Error in rule (\w+):", output))),
                "objects_in": summary.get("objects_in"),
                "triplets_out": summary.get("triplets_out"),
                "objects_failed": summary.get("objects_failed"),
                "adds_up": summary.get("adds_up"),
                "failures": summary.get("failures"),
                "flags": summary.get("flags"),
                "stages": {k: {"in": v["in"], "out": v["out"]} for k, v in summary.get("stages", {}).items()},
                "seconds": round(seconds, 1),
                "cores": args.cores,
                "render": "3 views at 64 px, 4 Cycles samples (the wiring of the demo preset, smaller)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
