"""Atomic output files: a reader sees either the complete file or none.

Every stage writes through these helpers: data goes to a temporary file in the
destination's directory, is flushed to disk, and is renamed over the target.
A killed job therefore never leaves a partial shard behind. The file gets the
permissions a plain ``open()`` would give it (0666 less the umask), so results are
as readable by a group as any other file the user writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


DIGEST_KEY = "ulip2.content_sha256"


def table_digest(table: pa.Table) -> str:
    """sha256 of the table's rows and schema (not its metadata): equal data, equal digest."""
    digest = hashlib.sha256()
    # Neither chunking nor being a slice of a bigger table is content: take() gives fresh buffers.
    stripped = table.replace_schema_metadata(None).take(pa.array(range(table.num_rows), pa.int64()))
    with pa.ipc.new_stream(_HashSink(digest), stripped.schema) as writer:
        for batch in stripped.to_batches():
            writer.write_batch(batch)
    return digest.hexdigest()


class _HashSink:
    """A write-only file object that feeds what is written into a hash."""

    def __init__(self, digest):
        self.digest, self.closed = digest, False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_digest(path: str | Path) -> str:
    """The digest recorded in a Parquet file's metadata by write_parquet; the file's sha256 otherwise."""
    metadata = pq.read_schema(path).metadata or {}
    if DIGEST_KEY.encode() in metadata:
        return metadata[DIGEST_KEY.encode()].decode()
    return file_sha256(path)


def write_parquet(
    table: pa.Table, target: str | Path, metadata: dict[str, str] | None = None, row_group_size: int | None = None
) -> None:
    """Write ``table`` atomically, adding ``metadata`` (str -> str) and the content digest to its schema."""
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in (metadata or {}).items()})
    merged[DIGEST_KEY.encode()] = table_digest(table).encode()
    table = table.replace_schema_metadata(merged)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")


def write_bytes(data: bytes, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
