import copy

import pytest
import yaml
from conftest import REPO

from ulip2_pipeline.config import ConfigError, selected_dataset_names, validate_config

SCHEMA = REPO / "config.schema.yaml"


def default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_the_shipped_config_and_presets_are_valid():
    config = validate_config(default_config(), SCHEMA)
    assert config["datasets"]["demo"]["points"]["max_faces"] > 0  # default filled in
    for preset in ("objaverse", "shapenet"):
        merged = default_config()
        merged["datasets"].update(yaml.safe_load((REPO / "presets" / f"{preset}.yaml").read_text())["datasets"])
        validate_config(merged, SCHEMA)


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda c: c["datasets"]["demo"].update(shard_sise=4), "unknown key 'datasets.demo.shard_sise'"),
        (lambda c: c.update(colour="red"), "unknown key 'colour'"),
        (lambda c: c["datasets"]["demo"].update(shard_size="big"), "key 'datasets.demo.shard_size': expected integer"),
        (
            lambda c: c["datasets"]["demo"]["points"].update(count=1.5),
            "key 'datasets.demo.points.count': expected integer",
        ),
        (
            lambda c: c["datasets"]["demo"]["source"].update(kind="ftp"),
            "key 'datasets.demo.source.kind': expected one of",
        ),
        (
            lambda c: c["datasets"]["demo"]["source"].update(objects_per_clas=3),
            "unknown key 'datasets.demo.source.objects_per_clas'",
        ),
        (lambda c: c["datasets"]["demo"].update(render_preset="nope"), "no render preset named 'nope'"),
        (lambda c: c["datasets"]["demo"]["points"].update(prefix_sizes=[20000]), "larger than points.count"),
        (lambda c: c.update(only="missing"), "key 'only': no dataset named 'missing'"),
        (
            lambda c: c["datasets"].update(shapenet={"source": {"kind": "shapenet"}, "render_preset": "shapenet"}),
            "key 'datasets.shapenet.source': 'path' is a required property",
        ),
    ],
)
def test_bad_keys_and_types_are_rejected_with_the_key_named(mutate, expected):
    config = default_config()
    mutate(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config, SCHEMA)
    assert expected in str(info.value)


def test_only_accepts_a_list_or_a_comma_separated_string():
    config = default_config()
    config["datasets"]["other"] = copy.deepcopy(config["datasets"]["demo"])
    validate_config(config, SCHEMA)
    assert selected_dataset_names(config) == ["demo", "other"]
    config["only"] = "other"
    assert selected_dataset_names(config) == ["other"]
    config["only"] = ["demo", "other"]
    assert selected_dataset_names(config) == ["demo", "other"]


def test_folder_source_defaults_survive_yaml():
    """'off' is a YAML 1.1 boolean; the default extension list must still hold the string."""
    config = default_config()
    config["datasets"]["meshes"] = {"source": {"kind": "folder", "path": "data/meshes"}, "render_preset": "demo"}
    validate_config(config, SCHEMA)
    assert "off" in config["datasets"]["meshes"]["source"]["extensions"]


def test_values_inside_a_command_line_dict_are_typed_as_the_schema_wants():
    """Snakemake reads `--config 'fuse={enabled: true}'` as {'enabled': 'true'}: the strings get their types."""
    from snakemake.cli import parse_config

    config = {**default_config(), **parse_config(["fuse={enabled: true}", "quality={low_contrast_below: 0.3}"])}
    assert config["fuse"] == {"enabled": "true"}  # what Snakemake hands over
    validate_config(config)
    assert config["fuse"]["enabled"] is True
    assert config["quality"]["low_contrast_below"] == 0.3
    assert config["quality"]["drop_views"] == []  # defaults still filled


def test_a_string_that_is_not_the_wanted_type_is_still_an_error():
    config = {**default_config(), "fuse": {"enabled": "perhaps"}}
    with pytest.raises(ConfigError, match="fuse.enabled': expected boolean, got str 'perhaps'"):
        validate_config(config)
