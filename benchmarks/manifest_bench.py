"""Rescanning a folder source of a million objects: what growing a dataset costs before any shard runs.

Creates N small mesh files (once; kept under benchmarks/out/), builds the manifest,
then times (1) a rescan with nothing changed — every hash reused, no slice rewritten —
and (2) a rescan after adding 1,000 files, which fill new shards and touch no old slice.
Prints JSON figures.

    python benchmarks/manifest_bench.py                 # 1,000,000 objects, shard size 256
    python benchmarks/manifest_bench.py --objects 20000 # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from ulip2_pipeline.settings import SourceSettings  # noqa: E402
from ulip2_pipeline.stages.manifest import run_manifest

OUT = Path(__file__).resolve().parent / "out" / "manifest"


def make_files(root: Path, count: int, start: int = 0, per_folder: int = 1000) -> None:
    for index in range(start, start + count):
        folder = root / f"group{index // per_folder:05d}"
        if index % per_folder == 0 or index == start:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"object{index:07d}.obj").write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n# %d\n" % index)


def timed(source: dict, shard_size: int, out: Path) -> dict:
    started = time.perf_counter()
    summary = run_manifest(source, shard_size, out / "manifest.parquet", out / "failures.parquet")
    return {**summary, "wall_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--added", type=int, default=1000)
    args = parser.parse_args()
    root = OUT / f"files-{args.objects}"
    marker = root / ".complete"
    if not marker.exists():
        started = time.perf_counter()
        make_files(root, args.objects)
        marker.write_text(f"{time.perf_counter() - started:.1f} s\n")
    out = OUT / f"results-{args.objects}"
    for path in out.glob("**/*.parquet") if out.exists() else []:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    source = SourceSettings.from_config(
        {"kind": "folder", "path": str(root), "extensions": ["obj"], "category": "none"}
    )

    first = timed(source, args.shard_size, out)
    unchanged = timed(source, args.shard_size, out)
    extra = root / "added"
    make_files(extra, args.added, start=10_000_000)
    try:
        grown = timed(source, args.shard_size, out)
    finally:
        for path in sorted(extra.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        extra.rmdir()
    keys = (
        "objects",
        "shards",
        "hashed",
        "hash_reused",
        "new_objects",
        "slices_written",
        "slices_unchanged",
        "list_s",
        "wall_s",
    )
    print(
        json.dumps(
            {
                "objects": args.objects,
                "shard_size": args.shard_size,
                "cores": os.cpu_count(),
                "first_build": {k: first[k] for k in keys},
                "rescan_nothing_changed": {k: unchanged[k] for k in keys},
                f"rescan_{args.added}_added": {k: grown[k] for k in keys},
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
