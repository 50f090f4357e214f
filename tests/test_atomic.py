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
