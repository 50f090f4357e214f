"""The failure ledger: its columns, its metadata, and that an empty ledger is still a valid shard."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulip2_pipeline.failures import FAILURE_SCHEMA, Failure, ObjectFailure, write_failures

LEDGER_COLUMNS = ["uid", "stage", "source", "reason", "detail"]


def test_the_ledger_has_five_nullable_string_columns_in_the_documented_order():
    assert FAILURE_SCHEMA.names == LEDGER_COLUMNS
    assert all(field.type == pa.string() for field in FAILURE_SCHEMA)
    assert all(field.nullable for field in FAILURE_SCHEMA)


def test_every_failure_becomes_a_row_with_its_fields_in_their_columns(tmp_path):
    failures = [
        Failure("a", "points", "/data/a.glb", "unreadable", "ValueError: not a mesh"),
        Failure("b", "points", "/data/b.obj", "empty", "no triangles"),
    ]
    write_failures(failures, tmp_path / "ledger.parquet")
    table = pq.read_table(tmp_path / "ledger.parquet")
    assert table.schema.remove_metadata() == FAILURE_SCHEMA
    assert table.to_pylist() == [
        {
            "uid": "a",
            "stage": "points",
            "source": "/data/a.glb",
            "reason": "unreadable",
            "detail": "ValueError: not a mesh",
        },
        {"uid": "b", "stage": "points", "source": "/data/b.obj", "reason": "empty", "detail": "no triangles"},
    ]


def test_an_empty_ledger_is_a_valid_file_with_the_ledger_schema(tmp_path):
    write_failures([], tmp_path / "ledger.parquet")
    table = pq.read_table(tmp_path / "ledger.parquet")
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == FAILURE_SCHEMA


def test_the_ledger_records_the_metadata_it_is_given(tmp_path):
    write_failures([], tmp_path / "ledger.parquet", {"ulip2.stage": "render", "ulip2.shard": "00003"})
    metadata = pq.read_schema(tmp_path / "ledger.parquet").metadata
    assert metadata[b"ulip2.stage"] == b"render"
    assert metadata[b"ulip2.shard"] == b"00003"


def test_a_failure_is_immutable():
    failure = Failure("a", "points", "", "empty", "")
    with pytest.raises(AttributeError):
        failure.reason = "unreadable"


def test_an_object_failure_carries_its_reason_and_detail_and_says_both():
    error = ObjectFailure("no_area", "all 12 triangles are degenerate")
    assert error.reason == "no_area"
    assert error.detail == "all 12 triangles are degenerate"
    assert str(error) == "no_area: all 12 triangles are degenerate"
