"""The manifest: every object of a dataset, its checksum, and the shard it belongs to.

Shards are the unit of work of every later stage (one job per shard). Membership is
stable: a rescan keeps every known object in its shard and puts new objects in new
shards, so growing a dataset costs only the new shards. Each shard's rows are also
written to a slice, ``manifest/{shard}.parquet`` beside the manifest, which is what a
shard's jobs read; a slice is rewritten only when its rows change, so Snakemake reruns
exactly the shards whose objects were added, removed or changed. A rescan hashes only
files whose path, size or modification time differ from the previous manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ulip2_pipeline.atomic import DIGEST_KEY, file_sha256, table_digest, write_parquet
from ulip2_pipeline.config import config_hash
from ulip2_pipeline.failures import Failure, write_failures
from ulip2_pipeline.records import Row
from ulip2_pipeline.settings import SourceSettings
from ulip2_pipeline.sources import SourceObject, list_objects

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
UID_PATTERN = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
)  # used with fullmatch: "$" also matches before a final newline
SHARD_FILE = re.compile(r"^\d{5,}\.parquet$")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64()),
        pa.field("category", pa.string()),
        pa.field("shard", pa.string(), nullable=False),
    ]
)


class ManifestError(ValueError):
    """A file that is not a ulip2 manifest."""


def shard_name(index: int) -> str:
    return f"{index:05d}"


def slices_dir(manifest: str | Path) -> Path:
    """The folder of the shard slices of ``results/{dataset}/manifest.parquet``: ``results/{dataset}/manifest/``."""
    manifest = Path(manifest)
    return manifest.parent / manifest.stem


def slice_path(manifest: str | Path, shard: str) -> Path:
    return slices_dir(manifest) / f"{shard}.parquet"


def admit(objects: list[SourceObject]) -> tuple[list[SourceObject], list[Failure]]:
    """Objects whose uid is safe and unique and whose file is inside its root; the others as failures."""
    admitted, failures, seen = [], [], {}
    for obj in sorted(objects, key=_uid):  # stable: sources list in a deterministic order
        problem = None
        if not obj.checked and (not UID_PATTERN.fullmatch(obj.uid) or ".." in obj.uid):
            problem = (
                "unsafe_uid",
                f"uid {obj.uid!r} is not a safe file name: uids may hold only letters, "
                "digits, '.', '_' and '-', start with a letter or digit, must not contain '..', and "
                "have at most 200 characters",
            )
        elif not obj.checked and not Path(obj.path).resolve().is_relative_to(Path(obj.root).resolve()):
            problem = (
                "outside_root",
                f"{obj.path} resolves to {Path(obj.path).resolve()}, outside the dataset root {obj.root}",
            )
        elif obj.uid in seen:
            problem = ("duplicate_uid", f"{obj.path} has the uid of {seen[obj.uid]}, which was admitted")
        if problem:
            failures.append(Failure(obj.uid, "manifest", str(obj.path), *problem))
            continue
        seen[obj.uid] = obj.path
        admitted.append(obj)
    return admitted, failures


def _uid(obj: SourceObject) -> str:
    return obj.uid


def hash_objects(
    objects: list[SourceObject], previous: dict[str, tuple], workers: int = 4
) -> tuple[list[dict], list[Failure], int]:
    """Manifest rows (without shard) of the objects, reusing the previous sha256 of unchanged files.

    A file is unchanged when its path, size and modification time equal the previous
    manifest's (``previous``: uid -> (source, bytes, mtime_ns, sha256, shard)). Returns
    the rows, the objects whose file cannot be read, and how many files were hashed.
    """
    rows, to_hash, failures = [], [], []
    for obj in objects:
        source = str(obj.path)
        try:
            size, mtime = (obj.bytes, obj.mtime_ns) if obj.mtime_ns is not None else _stat(source)
        except OSError as exc:
            failures.append(Failure(obj.uid, "manifest", source, "unreadable_file", f"{type(exc).__name__}: {exc}"))
            continue
        row = {"uid": obj.uid, "source": source, "bytes": size, "mtime_ns": mtime, "category": obj.category}
        known = previous.get(obj.uid)
        if known and known[0] == source and known[1] == size and known[2] == mtime:
            row["sha256"] = known[3]
        else:
            to_hash.append(row)
        rows.append(row)

    def digest(row: Row) -> str | Failure:
        try:
            return file_sha256(row["source"])
        except OSError as exc:
            return Failure(row["uid"], "manifest", row["source"], "unreadable_file", f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row, result in zip(to_hash, pool.map(digest, to_hash)):
            if isinstance(result, Failure):
                failures.append(result)
            row["sha256"] = result
    rows = [r for r in rows if isinstance(r["sha256"], str)]
    return rows, failures, len(to_hash)


def _stat(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def assign_shards(
    uids: list[str], previous: dict[str, str], shard_size: int, next_index: int
) -> tuple[dict[str, str], int]:
    """Known uids keep their shard; new uids, in uid order, fill new shards from ``next_index``."""
    assignment = {uid: previous[uid] for uid in uids if uid in previous}
    new = sorted(uid for uid in uids if uid not in previous)
    for start in range(0, len(new), shard_size):
        for uid in new[start : start + shard_size]:
            assignment[uid] = shard_name(next_index)
        next_index += 1
    return assignment, next_index


def read_previous(manifest: str | Path) -> tuple[dict[str, tuple], dict]:
    """uid -> (source, bytes, mtime_ns, sha256, shard) and the metadata of an earlier manifest, if readable."""
    try:
        table = pq.read_table(manifest)
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return {}, {}
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "ulip2.shards" not in metadata:
        return {}, {}
    if "mtime_ns" not in table.column_names:  # schema 1: no modification times, so every file is hashed again
        table = table.append_column("mtime_ns", pa.nulls(table.num_rows, pa.int64()))
    columns = [table.column(c).to_pylist() for c in ("uid", "source", "bytes", "mtime_ns", "sha256", "shard")]
    return {uid: rest for uid, *rest in zip(*columns)}, metadata


def build_manifest(
    objects: list[SourceObject],
    shard_size: int,
    previous: dict[str, tuple] | None = None,
    next_index: int = 0,
    workers: int = 4,
) -> tuple[pa.Table, list[Failure], dict]:
    """Admit, hash and shard ``objects``; returns the table (sorted by shard, uid), failures and figures."""
    previous = previous or {}
    admitted, failures = admit(objects)
    rows, unreadable, hashed = hash_objects(admitted, previous, workers)
    failures += unreadable
    assignment, next_index = assign_shards(
        [r["uid"] for r in rows], {u: r[4] for u, r in previous.items()}, shard_size, next_index
    )
    for row in rows:
        row["shard"] = assignment[row["uid"]]
    rows.sort(key=lambda r: (r["shard"], r["uid"]))
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    figures = {
        "objects": len(rows),
        "hashed": hashed,
        "hash_reused": len(rows) - hashed,
        "next_shard": next_index,
        "new_objects": sum(1 for r in rows if r["uid"] not in previous),
        "removed_objects": len(set(previous) - {r["uid"] for r in rows}),
    }
    return table, failures, figures


def shard_slices(table: pa.Table) -> dict[str, pa.Table]:
    """The rows of each shard, in uid order (the table is sorted by shard, uid)."""
    shards = table.column("shard").to_pylist()
    slices, start = {}, 0
    for end in range(1, len(shards) + 1):
        if end == len(shards) or shards[end] != shards[start]:
            slices[shards[start]] = table.slice(start, end - start)
            start = end
    return slices


SLICE_COLUMNS = ["uid", "source", "sha256", "bytes", "category", "shard"]
OBJECT_COLUMNS = ["uid", "sha256", "bytes", "category", "shard"]  # what a shard's outputs depend on
OBJECTS_KEY = "ulip2.objects_sha256"


def write_slices(slices: dict[str, pa.Table], manifest: str | Path) -> dict[str, list[str]]:
    """Write each shard's slice unless an identical one is there; remove slices of shards that are gone.

    An untouched slice keeps its modification time, so the shard's jobs do not rerun.
    A slice whose objects are unchanged but whose file paths moved (a relocated cache)
    is rewritten with its old modification time: moving files reruns nothing.
    """
    folder = slices_dir(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    written, moved, unchanged = [], [], []
    for shard, rows in slices.items():
        target = slice_path(manifest, shard)
        rows = rows.select(SLICE_COLUMNS)
        objects = table_digest(rows.select(OBJECT_COLUMNS))
        old = _slice_digests(target)
        if old == (table_digest(rows), objects):
            unchanged.append(shard)
            continue
        times = target.stat().st_mtime_ns if old and old[1] == objects else None
        write_parquet(
            rows, target, {"ulip2.schema_version": SCHEMA_VERSION, "ulip2.shard": shard, OBJECTS_KEY: objects}
        )
        if times is not None:
            os.utime(target, ns=(times, times))
            moved.append(shard)
        else:
            written.append(shard)
    removed = []
    for path in folder.iterdir():
        if SHARD_FILE.match(path.name) and path.stem not in slices:
            path.unlink()
            removed.append(path.stem)
    return {
        "written": sorted(written),
        "moved": sorted(moved),
        "unchanged": sorted(unchanged),
        "removed": sorted(removed),
    }


def _slice_digests(path: Path) -> tuple[str, str] | None:
    """(content digest, objects digest) recorded in an existing slice, or None."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return None
    if OBJECTS_KEY.encode() not in metadata or DIGEST_KEY.encode() not in metadata:
        return None  # not written by write_slices: rewrite it
    return metadata[DIGEST_KEY.encode()].decode(), metadata[OBJECTS_KEY.encode()].decode()


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
    """The manifest rows of one shard, from the whole manifest or from the shard's slice."""
    table = pq.read_table(path, filters=[("shard", "=", shard)])
    return table.to_pylist()


def run_manifest(
    source: SourceSettings,
    shard_size: int,
    out: str | Path,
    failures_out: str | Path,
    demo_dir: str | Path | None = None,
) -> dict:
    """List the source, admit, hash (reusing unchanged files' hashes) and shard it; write manifest and slices.

    ``out`` may hold the previous manifest (the rule marks it ``update``): its shard
    assignments and hashes are kept. Objects that cannot be admitted go to the ledger.
    """
    started = time.perf_counter()
    objects, unavailable = list_objects(source, demo_dir)
    listed = time.perf_counter()
    previous, previous_metadata = read_previous(out)
    next_index = int(previous_metadata.get("ulip2.next_shard", 0))
    if previous and not next_index:
        next_index = 1 + max(int(row[4]) for row in previous.values())
    table, failures, figures = build_manifest(objects, shard_size, previous, next_index)
    failures = [Failure(uid, "manifest", "", reason, detail) for uid, reason, detail in unavailable] + failures
    for failure in failures:
        log.warning("%s: %s: %s", failure.uid, failure.reason, failure.detail)
    slices = shard_slices(table)
    changes = write_slices(slices, out)
    write_failures(failures, failures_out, {"ulip2.stage": "manifest"})
    write_manifest(
        table,
        out,
        {
            "ulip2.config_hash": config_hash([source.as_config(), shard_size]),
            "ulip2.next_shard": str(figures["next_shard"]),
            "ulip2.shard_size": str(shard_size),
        },
    )
    summary = {
        **figures,
        "shards": len(slices),
        "slices_written": len(changes["written"]),
        "slices_moved": len(changes["moved"]),
        "slices_unchanged": len(changes["unchanged"]),
        "slices_removed": len(changes["removed"]),
        "unavailable": len(failures),
        "list_s": round(listed - started, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("manifest: %s", json.dumps(summary))
    if changes["written"]:
        log.info(
            "shards whose objects changed (their jobs rerun): %s",
            ", ".join(changes["written"][:50]) + (" ..." if len(changes["written"]) > 50 else ""),
        )
    return summary
