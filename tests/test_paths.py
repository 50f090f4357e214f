"""The results layout is defined once (ulip2_pipeline.paths) and the schema ships inside the package."""

from importlib import resources

import pytest
import yaml
from conftest import REPO

from ulip2_pipeline import paths
from ulip2_pipeline.config import SCHEMA_PATH, validate_config


@pytest.mark.parametrize(
    "pattern,values,expected",
    [
        (paths.MANIFEST, {"dataset": "d"}, "results/d/manifest.parquet"),
        (paths.POINTS, {"dataset": "d", "shard": "00007"}, "results/d/points/00007.parquet"),
        (paths.RENDER, {"dataset": "d", "shard": "00007"}, "results/d/render/00007.parquet"),
        (paths.CAPTIONS, {"dataset": "d", "shard": "00007"}, "results/d/captions/00007.parquet"),
        (paths.RANKED, {"dataset": "d", "shard": "00007"}, "results/d/ranked/00007.parquet"),
        (paths.TRIPLETS, {"dataset": "d", "shard": "00007"}, "results/d/triplets/00007.parquet"),
        (paths.EMBED, {"dataset": "d", "model": "m", "shard": "00007"}, "results/d/embed/m/00007.parquet"),
        (paths.failures("rank"), {"dataset": "d", "shard": "00007"}, "results/d/failures/rank/00007.parquet"),
        (paths.MANIFEST_FAILURES, {"dataset": "d"}, "results/d/failures/manifest.parquet"),
        (paths.SUMMARY, {"dataset": "d"}, "results/d/summary.json"),
        (paths.MODEL, {"dataset": "d", "run": "r"}, "results/d/train/r/model.pt"),
        (paths.ZERO_SHOT, {"dataset": "d", "run": "r"}, "results/d/eval/r/zero_shot.json"),
        (paths.export("openshape", "train.json"), {"dataset": "d"}, "results/d/export/openshape/train.json"),
    ],
)
def test_the_layout_is_the_documented_one(pattern, values, expected):
    assert paths.fill(pattern, **values) == expected


def test_fields_not_given_stay_wildcards():
    assert paths.fill(paths.EMBED, model="tiny-clip") == "results/{dataset}/embed/tiny-clip/{shard}.parquet"


def test_a_results_folder_elsewhere_keeps_the_layout(tmp_path):
    shard = paths.under(tmp_path / "out", paths.TRIPLETS, dataset="d", shard="00001")
    assert shard == tmp_path / "out" / "d" / "triplets" / "00001.parquet"


def test_the_package_ships_the_schema_the_repository_documents():
    shipped = resources.files("ulip2_pipeline").joinpath("config.schema.yaml").read_bytes()
    assert shipped == (REPO / "config.schema.yaml").read_bytes()
    assert SCHEMA_PATH.read_bytes() == shipped


def test_validation_uses_the_shipped_schema_by_default():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.pop("caption", None)
    assert validate_config(config)["caption"]["num_captions"] == 10  # a default only the schema knows
