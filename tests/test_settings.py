"""Typed settings: their fields are the schema's keys, throughput fields stay out of a rule's params."""

import dataclasses
import subprocess
import sys

import pytest

from ulip2_pipeline.config import SCHEMA_PATH, ConfigError, default_config, load_schema
from ulip2_pipeline.settings import (
    CaptionSettings,
    DatasetSettings,
    EmbedSettings,
    EvalSettings,
    FuseSettings,
    PointsSettings,
    QualitySettings,
    RankSettings,
    RenderSettings,
    ReportSettings,
    TrainSettings,
    TripletsSettings,
)
from ulip2_pipeline.workflow import job_settings

SCHEMA = load_schema(SCHEMA_PATH)
SECTIONS = {
    CaptionSettings: SCHEMA["$defs"]["caption"],
    RankSettings: SCHEMA["$defs"]["rank"],
    EmbedSettings: SCHEMA["$defs"]["embed"],
    PointsSettings: SCHEMA["$defs"]["points"],
    DatasetSettings: SCHEMA["$defs"]["dataset"],
    RenderSettings: SCHEMA["$defs"]["render_preset"],
    TripletsSettings: SCHEMA["properties"]["triplets"],
    ReportSettings: SCHEMA["properties"]["report"],
    TrainSettings: SCHEMA["$defs"]["train"],
    EvalSettings: SCHEMA["$defs"]["eval"],
    FuseSettings: SCHEMA["$defs"]["fuse"],
    QualitySettings: SCHEMA["properties"]["quality"],
}


def sections():
    config = default_config()
    return {
        CaptionSettings: config["caption"],
        RankSettings: config["rank"],
        EmbedSettings: config["embed"],
        PointsSettings: config["datasets"]["test"]["points"],
        DatasetSettings: config["datasets"]["test"],
        RenderSettings: config["render_presets"]["test"],
        TripletsSettings: config["triplets"],
        ReportSettings: config["report"],
        TrainSettings: config["train"],
        EvalSettings: config["eval"],
        FuseSettings: config["fuse"],
        QualitySettings: config["quality"],
    }


@pytest.mark.parametrize("kind", list(SECTIONS), ids=lambda k: k.__name__)
def test_the_fields_are_the_schemas_keys(kind):
    assert sorted(f.name for f in dataclasses.fields(kind)) == sorted(SECTIONS[kind]["properties"])


@pytest.mark.parametrize(
    ("kind", "throughput"),
    [
        (CaptionSettings, {"batch_size", "device", "threads"}),
        (RankSettings, {"batch_size", "device", "threads"}),
        (EmbedSettings, {"batch_size", "device", "threads"}),
        (RenderSettings, {"device", "threads"}),
        (PointsSettings, set()),
        (DatasetSettings, set()),
        (TripletsSettings, set()),
        (ReportSettings, set()),
        (TrainSettings, {"workers", "device", "threads"}),  # the batch is the loss's negatives: an output setting
        (EvalSettings, {"batch_size", "device"}),
        (FuseSettings, {"batch_size", "device", "threads"}),
    ],
    ids=lambda k: getattr(k, "__name__", ""),
)
def test_only_speed_knobs_are_declared_throughput(kind, throughput):
    assert set(kind.throughput_fields()) == throughput


def test_params_leave_out_the_throughput_fields_and_keep_the_configurations_order():
    section = {**default_config()["caption"], "batch_size": 3, "threads": 7}
    params = CaptionSettings.output_params(section)
    assert list(params) == [k for k in section if k not in ("batch_size", "device", "threads")]
    assert params["model"] == section["model"]
    faster = {**section, "batch_size": 64, "threads": 1, "device": "cuda"}
    assert CaptionSettings.output_params(faster) == params


def test_a_job_gets_its_params_back_with_the_throughput_fields_from_the_configuration():
    for kind, section in sections().items():
        if not kind.throughput_fields():
            continue
        settings = job_settings(kind, kind.output_params(section), section)
        assert settings == kind.from_config(section)
        assert settings.as_config() == section


def test_settings_are_frozen_and_lists_become_tuples():
    points = PointsSettings.from_config(default_config()["datasets"]["test"]["points"])
    assert points.prefix_sizes == (8192, 2048)
    assert isinstance(points.default_rgb, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        points.count = 5
    assert points.replace(prefix_sizes=[10]).prefix_sizes == (10,)


def test_nested_settings_are_typed_and_round_trip():
    section = default_config()["datasets"]["test"]
    dataset = DatasetSettings.from_config(section)
    assert isinstance(dataset.points, PointsSettings)
    assert dataset.as_config() == section


def test_unknown_and_missing_keys_are_named():
    section = default_config()["rank"]
    with pytest.raises(ConfigError, match=r"unknown keys \['topk'\]"):
        RankSettings.from_config({**section, "topk": 2})
    del section["top_k"]
    with pytest.raises(ConfigError, match=r"missing keys \['top_k'\]"):
        RankSettings.from_config(section)


def test_training_and_the_stages_import_without_jsonschema():
    """A training rank or a benchmark on a GPU machine builds typed settings, but has no jsonschema."""
    code = (
        "import sys\n"
        "import ulip2_pipeline.settings, ulip2_pipeline.train.trainer, ulip2_pipeline.stages.caption\n"
        "assert 'jsonschema' not in sys.modules, 'jsonschema was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
