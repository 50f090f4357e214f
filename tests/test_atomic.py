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
