"""The one shard runner: the metadata every shard carries, its ledger, its summary line."""

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulip2_pipeline import __version__
from ulip2_pipeline.failures import Failure
from ulip2_pipeline.shard import ShardClock, ShardWork

log = logging.getLogger("ulip2_pipeline.stages.example")


def test_a_shard_carries_its_stage_shard_schema_and_package_version_and_its_ledger(tmp_path, caplog):
    table = pa.table({"uid": ["a"]})
    work = ShardWork(
        table=table,
        counts={"objects": 2},
        metadata={"ulip2.model": "m"},
        failures=[Failure("b", "example", "b.obj", "unreadable", "bad")],
    )
    with caplog.at_level("INFO", logger=log.name):
        summary = ShardClock("example", "3", "00007", log).finish(work, tmp_path / "s.parquet", tmp_path / "f.parquet")
    metadata = pq.read_schema(tmp_path / "s.parquet").metadata
    assert metadata[b"ulip2.schema_version"] == b"3"
    assert metadata[b"ulip2.version"] == __version__.encode()
    assert metadata[b"ulip2.stage"] == b"example"
    assert metadata[b"ulip2.shard"] == b"00007"
    assert metadata[b"ulip2.model"] == b"m"
    ledger = pq.read_table(tmp_path / "f.parquet")
    assert ledger.column("uid").to_pylist() == ["b"]
    assert ledger.schema.metadata[b"ulip2.shard"] == b"00007"
    assert summary.counts == {"objects": 2}
    assert summary["objects"] == 2
    assert summary["shard"] == "00007"
    assert [r.getMessage() for r in caplog.records] == [f"shard summary: {json.dumps(summary.as_dict())}"]


def test_failures_without_a_ledger_to_write_them_to_are_an_error(tmp_path):
    work = ShardWork(table=pa.table({"uid": ["a"]}), counts={}, failures=[Failure("b", "x", "", "r", "d")])
    with pytest.raises(ValueError, match="no failure ledger"):
        ShardClock("x", "1", "00000", log).finish(work, tmp_path / "s.parquet")
    assert not (tmp_path / "s.parquet").exists()
