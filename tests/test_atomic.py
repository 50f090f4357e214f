import pyarrow as pa
import pytest

from ulip2_pipeline.atomic import atomic_path, write_parquet


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_target_is_replaced_whole(tmp_path):
    target = tmp_path / "out.parquet"
    write_parquet(pa.table({"a": [1]}), target)
    write_parquet(pa.table({"a": [2, 3]}), target, {"k": "v"})
    table = pa.parquet.read_table(target)
    assert table.column("a").to_pylist() == [2, 3]
    assert table.schema.metadata[b"k"] == b"v"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_outputs_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        write_parquet(pa.table({"a": [1]}), tmp_path / "group.parquet")
        os.umask(0o022)
        write_parquet(pa.table({"a": [1]}), tmp_path / "world.parquet")
    finally:
        os.umask(old)
    assert (tmp_path / "group.parquet").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "world.parquet").stat().st_mode & 0o777 == 0o644


def test_the_content_digest_follows_the_rows_not_the_file(tmp_path):
    from ulip2_pipeline.atomic import content_digest

    write_parquet(pa.table({"a": [1, 2]}), tmp_path / "x.parquet", {"when": "monday"})
    write_parquet(pa.table({"a": [1, 2]}), tmp_path / "y.parquet", {"when": "tuesday"}, row_group_size=1)
    write_parquet(pa.table({"a": [1, 3]}), tmp_path / "z.parquet")
    assert content_digest(tmp_path / "x.parquet") == content_digest(tmp_path / "y.parquet")
    assert content_digest(tmp_path / "x.parquet") != content_digest(tmp_path / "z.parquet")
    pa.parquet.write_table(pa.table({"a": [1, 2]}), tmp_path / "foreign.parquet")
    assert len(content_digest(tmp_path / "foreign.parquet")) == 64


def test_the_digest_ignores_how_the_rows_are_chunked():
    from ulip2_pipeline.atomic import table_digest

    whole = pa.table({"a": [1, 2, 3, 4]})
    pieces = pa.concat_tables([pa.table({"a": [1, 2]}), pa.table({"a": [3, 4]})])
    assert pieces.column("a").num_chunks == 2
    assert table_digest(whole) == table_digest(pieces)
    names = pa.table({"s": ["a", "bb", "ccc", "dddd"]})
    assert table_digest(names.slice(2, 2)) == table_digest(pa.table({"s": ["ccc", "dddd"]}))


def test_file_sha256_is_the_digest_of_the_whole_file_read_in_bounded_chunks(tmp_path, monkeypatch):
    """Meshes can be gigabytes: the file is hashed chunk by chunk, never read whole."""
    import hashlib

    from ulip2_pipeline import atomic

    data = bytes(range(256)) * 10
    (tmp_path / "blob").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert atomic.file_sha256(tmp_path / "blob") == expected
    requested = []

    class RecordingFile:
        def __init__(self, path, mode):
            self.file = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def read(self, size=-1):
            requested.append(size)
            return self.file.read(size)

    monkeypatch.setattr(atomic, "open", RecordingFile, raising=False)
    assert atomic.file_sha256(tmp_path / "blob", chunk=7) == expected
    assert set(requested) == {7}


def test_a_foreign_parquet_files_digest_is_its_sha256(tmp_path):
    import hashlib

    from ulip2_pipeline.atomic import content_digest

    pa.parquet.write_table(pa.table({"a": [1, 2]}), tmp_path / "foreign.parquet")
    assert (
        content_digest(tmp_path / "foreign.parquet")
        == hashlib.sha256((tmp_path / "foreign.parquet").read_bytes()).hexdigest()
    )


def test_the_digest_is_recorded_under_its_documented_key(tmp_path):
    """Earlier runs' files are read back by this key: renaming it would make every slice look foreign."""
    from ulip2_pipeline.atomic import DIGEST_KEY, table_digest

    table = pa.table({"a": [1, 2]})
    write_parquet(table, tmp_path / "x.parquet")
    assert DIGEST_KEY == "ulip2.content_sha256"
    assert (
        pa.parquet.read_schema(tmp_path / "x.parquet").metadata[b"ulip2.content_sha256"] == table_digest(table).encode()
    )


def test_the_digest_ignores_schema_metadata_but_not_the_schema():
    from ulip2_pipeline.atomic import table_digest

    table = pa.table({"a": [1, 2]})
    assert table_digest(table.replace_schema_metadata({"when": "monday"})) == table_digest(table)
    assert table_digest(table.cast(pa.schema([("a", pa.int32())]))) != table_digest(table)
    assert table_digest(table.rename_columns(["b"])) != table_digest(table)


def test_write_parquet_keeps_the_tables_own_metadata_and_the_row_group_size(tmp_path):
    table = pa.table({"a": [1, 2, 3]}).replace_schema_metadata({"origin": "test"})
    write_parquet(table, tmp_path / "x.parquet", {"k": "v"}, row_group_size=1)
    metadata = pa.parquet.read_schema(tmp_path / "x.parquet").metadata
    assert metadata[b"origin"] == b"test"
    assert metadata[b"k"] == b"v"
    assert pa.parquet.ParquetFile(tmp_path / "x.parquet").num_row_groups == 3


def test_write_parquet_compresses_with_zstd(tmp_path):
    write_parquet(pa.table({"a": [1, 2, 3]}), tmp_path / "x.parquet")
    column = pa.parquet.ParquetFile(tmp_path / "x.parquet").metadata.row_group(0).column(0)
    assert column.compression == "ZSTD"


def test_write_bytes_replaces_the_target_whole(tmp_path):
    from ulip2_pipeline.atomic import write_bytes

    target = tmp_path / "sub" / "blob.bin"
    write_bytes(b"first version", target)
    write_bytes(b"second", target)
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]
