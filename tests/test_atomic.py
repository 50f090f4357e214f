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
