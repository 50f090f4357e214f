"""The manifest: every object of a dataset, its checksum, and the shard it belongs to.

Shards are the unit of work of every later stage (one job per shard), so the shard
list is stored in the file's metadata where Snakemake can read it cheaply.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import write_parquet
from .config import config_hash
from .failures import Failure, write_failures
from .sources import SourceObject, list_objects

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

MANIFEST_SCHEMA = pa.schema([
    pa.field("uid", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("category", pa.string()),
    pa.field("shard", pa.string(), nullable=False),
])


class ManifestError(ValueError):
    """The object list breaks the data contract (unsafe uid or path, duplicate uid)."""


def shard_name(index: int) -> str:
    return f"{index:05d}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_objects(objects: list[SourceObject]) -> None:
    """Reject uids that are unsafe as file names, files outside their root, and duplicate uids."""
    problems, seen = [], {}
    for obj in objects:
        if not UID_PATTERN.match(obj.uid) or ".." in obj.uid:
            problems.append(f"uid {obj.uid!r} ({obj.path}): not a safe name; uids may hold only "
                            "letters, digits, '.', '_' and '-', must not contain '..' and are used in file paths")
        if not obj.path.resolve().is_relative_to(obj.root.resolve()):
            problems.append(f"uid {obj.uid!r}: {obj.path} resolves to {obj.path.resolve()}, "
                            f"outside the dataset root {obj.root}")
        if obj.uid in seen:
            problems.append(f"duplicate uid {obj.uid!r}: {seen[obj.uid]} and {obj.path}")
        else:
            seen[obj.uid] = obj.path
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ManifestError("rejected objects:\n  - " + "\n  - ".join(shown) + more)


def build_manifest(objects: list[SourceObject], shard_size: int, workers: int = 4) -> pa.Table:
    """Check the objects, hash their files and assign shards in uid order."""
    check_objects(objects)
    objects = sorted(objects, key=lambda o: o.uid)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = list(pool.map(lambda o: sha256_file(o.path), objects))
    return pa.table({
        "uid": [o.uid for o in objects],
        "source": [str(o.path) for o in objects],
        "sha256": digests,
        "bytes": [o.path.stat().st_size for o in objects],
        "category": [o.category for o in objects],
        "shard": [shard_name(i // shard_size) for i in range(len(objects))],
    }, schema=MANIFEST_SCHEMA)


def write_manifest(table: pa.Table, target: str | Path, extra_metadata: dict[str, str] | None = None) -> None:
    shards = sorted(set(table.column("shard").to_pylist()))
    metadata = {"ulip2.schema_version": SCHEMA_VERSION, "ulip2.shards": json.dumps(shards)}
    metadata.update(extra_metadata or {})
    write_parquet(table, target, metadata)


def manifest_shards(path: str | Path) -> list[str]:
    """The shard names of a manifest, read from its metadata without reading the rows."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(b"ulip2.shards")
    if raw is None:
        raise ManifestError(f"{path} is not a ulip2 manifest (no shard list in its metadata)")
    return json.loads(raw)


def read_shard(path: str | Path, shard: str) -> list[dict]:
    """The manifest rows of one shard."""
    table = pq.read_table(path, filters=[("shard", "=", shard)])
    return table.to_pylist()


def run_manifest(dataset_cfg: dict, out: str | Path, failures_out: str | Path,
                 demo_dir: str | Path | None = None) -> dict:
    """List the dataset's source, check it, hash it, shard it; unobtainable objects go to the ledger."""
    objects, missing = list_objects(dataset_cfg["source"], demo_dir)
    table = build_manifest(objects, dataset_cfg["shard_size"])
    failures = [Failure(uid, "manifest", "", reason, detail) for uid, reason, detail in missing]
    write_failures(failures, failures_out, {"ulip2.stage": "manifest"})
    write_manifest(table, out, {"ulip2.config_hash": config_hash(dataset_cfg)})
    summary = {"objects": table.num_rows, "shards": len(manifest_shards(out)), "unavailable": len(failures)}
    log.info("manifest: %s", summary)
    return summary
