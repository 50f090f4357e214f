"""The dataset's duplicates table: later copies of a shape point at the first, across shards."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.quality.geometry import shape_fingerprint
from ulip2_pipeline.stages.duplicates import read_duplicates, write_duplicates


def surface(kind: str, seed: int, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "sphere":
        points = rng.normal(size=(n, 3))
        return points / np.linalg.norm(points, axis=1, keepdims=True)
    if kind == "box":  # 1 x 2 x 3 box surface
        points = rng.uniform(-0.5, 0.5, size=(n, 3)) * [1, 2, 3]
        axis = rng.integers(0, 3, n)
        points[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * np.array([0.5, 1.0, 1.5])[axis]
        return points
    raise ValueError(kind)


def rotated(points: np.ndarray, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return points @ q.T * 2.5 + [3.0, -1.0, 0.5]


def write_fingerprints(path, clouds: dict[str, np.ndarray]):
    table = pa.table(
        {
            "uid": list(clouds),
            "fingerprint": pa.array([shape_fingerprint(c).tolist() for c in clouds.values()], pa.list_(pa.float32())),
        }
    )
    write_parquet(table, path)
    return path


@pytest.fixture
def shards(tmp_path):
    box = surface("box", 0)
    first = write_fingerprints(tmp_path / "00000.parquet", {"box": box, "ball": surface("sphere", 1)})
    second = write_fingerprints(
        tmp_path / "00001.parquet",
        {"box_turned": rotated(surface("box", 2), 3), "other_ball": surface("sphere", 4), "box_again": box},
    )
    return [second, first]  # the table must follow shard order, not the order given


def test_later_copies_point_at_the_first_in_manifest_order(tmp_path, shards):
    table = write_duplicates(shards, 0.05, tmp_path / "duplicates.parquet")
    assert read_duplicates(tmp_path / "duplicates.parquet") == {
        "box_turned": "box",
        "other_ball": "ball",
        "box_again": "box",
    }
    rows = table.to_pylist()
    assert [r["uid"] for r in rows] == ["box_turned", "other_ball", "box_again"]
    assert rows[2]["distance"] == 0.0
    assert 0.0 < rows[0]["distance"] <= 0.05


def test_the_threshold_is_recorded_and_a_tighter_one_keeps_only_exact_copies(tmp_path, shards):
    write_duplicates(shards, 1e-6, tmp_path / "duplicates.parquet")
    assert read_duplicates(tmp_path / "duplicates.parquet") == {"box_again": "box"}
    assert pq.read_schema(tmp_path / "duplicates.parquet").metadata[b"ulip2.duplicate_distance"] == b"1e-06"


def test_a_dataset_without_triplets_has_an_empty_table(tmp_path):
    empty = tmp_path / "00000.parquet"
    write_parquet(
        pa.table({"uid": pa.array([], pa.string()), "fingerprint": pa.array([], pa.list_(pa.float32()))}), empty
    )
    assert write_duplicates([empty], 0.05, tmp_path / "d.parquet").num_rows == 0
    assert read_duplicates(None) == {}
