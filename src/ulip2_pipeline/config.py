"""Validation of the workflow configuration against ``config.schema.yaml``.

The schema is the single documentation of every key. Validation fills in the
schema's defaults and turns jsonschema's errors into one message per problem
that names the key by its dotted path and says what was expected.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from ulip2_pipeline.records import RawConfig

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")  # package data; the repository's top-level file


# train.text_source values that need the fuse stage's object captions.
OBJECT_TEXT_SOURCES = ("object", "view_or_object")


class ConfigError(ValueError):
    """The configuration does not satisfy the schema; the message names every bad key."""


@functools.cache
def _default_filling_validator():
    """jsonschema's Draft 2020-12 validator that also fills in each property's default.

    Imported here, not at the top: the typed settings import this module, and a training job or a
    benchmark on a GPU machine needs them without jsonschema."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema and key not in instance:
                    instance[key] = json.loads(json.dumps(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _dotted(path: Iterable) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error) -> str:
    where = _dotted(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.absolute_path else ""
        return "; ".join(f"unknown key '{prefix}{key}' (allowed here: {', '.join(allowed)})" for key in extra)
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"key '{where}': expected {expected}, got {type(error.instance).__name__} {error.instance!r}"
    if kind == "required":
        return f"key '{where}': {error.message}"
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        return f"key '{where}': expected one of {options}, got {error.instance!r}"
    return f"key '{where}': {error.message}"


_TYPES = {"boolean": bool, "integer": int, "number": (int, float)}


def _type_command_line_values(config: RawConfig, validator) -> None:
    """Snakemake reads the values inside ``--config 'fuse={enabled: true}'`` as strings (YAML's base loader):
    where the schema wants a boolean or a number and gets a string that YAML reads as one, use that."""
    for _ in range(8):  # a fix can reveal errors below it; a handful of passes covers any config
        changed = False
        for error in validator.iter_errors(config):
            if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
                continue
            wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            try:
                value = yaml.safe_load(error.instance)
            except yaml.YAMLError:
                continue
            if any(
                isinstance(value, _TYPES[t]) and not (t != "boolean" and isinstance(value, bool))
                for t in wanted
                if t in _TYPES
            ):
                *parents, last = error.absolute_path
                container = config
                for key in parents:
                    container = container[key]
                container[last] = value
                changed = True
        if not changed:
            return


def validate_config(config: RawConfig, schema: dict | str | Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place, filling defaults; raise ConfigError naming every bad key.

    ``schema``: the schema (or its file); by default the one shipped with the package.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    validator = _default_filling_validator()(schema)
    _type_command_line_values(config, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    messages = [_describe(e) for e in errors]
    if not errors:
        messages = _cross_checks(config)
    if messages:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(messages))
    return config


def default_config(**sections: Any) -> dict:
    """The smallest valid configuration (dataset ``test``, render preset ``test``), every default filled in
    from the schema; ``sections`` replace top-level sections first. For tests and benchmarks."""
    config = {
        "datasets": {"test": {"source": {"kind": "demo"}, "render_preset": "test"}},
        "render_presets": {"test": {"views": 12}},
        **json.loads(json.dumps(sections)),
    }
    return validate_config(config)


def _cross_checks(config: RawConfig) -> list[str]:
    """Rules a JSON schema cannot express: references between sections."""
    problems = []
    presets = config.get("render_presets", {})
    for name, dataset in config.get("datasets", {}).items():
        preset = dataset.get("render_preset")
        if preset not in presets:
            problems.append(
                f"key 'datasets.{name}.render_preset': no render preset named {preset!r} "
                f"(defined: {', '.join(sorted(presets)) or 'none'})"
            )
        points = dataset.get("points", {})
        total = points.get("count", 0)
        for size in points.get("prefix_sizes", []):
            if size > total:
                problems.append(
                    f"key 'datasets.{name}.points.prefix_sizes': {size} is larger than points.count {total}"
                )
    source = config.get("train", {}).get("text_source")
    if source in OBJECT_TEXT_SOURCES and not config.get("fuse", {}).get("enabled"):
        problems.append(
            f"key 'train.text_source': {source} trains on the objects' fused captions, which need the fuse stage; "
            "set key 'fuse.enabled' to true (or pick captions, category or mix)"
        )
    for name in selected_dataset_names(config, check=False):
        if name not in config.get("datasets", {}):
            problems.append(
                f"key 'only': no dataset named {name!r} (defined: {', '.join(sorted(config.get('datasets', {})))})"
            )
    return problems


def selected_dataset_names(config: RawConfig, check: bool = True) -> list[str]:
    """Datasets a run builds: all configured ones, or those named by ``only``.

    ``only`` accepts a list or a comma-separated string, so that
    ``snakemake points --config only=demo`` works from the command line.
    """
    only = config.get("only") or []
    if isinstance(only, str):
        only = [name.strip() for name in only.split(",") if name.strip()]
    names = list(only) if only else sorted(config.get("datasets", {}))
    if check:
        unknown = [n for n in names if n not in config.get("datasets", {})]
        if unknown:
            raise ConfigError(f"key 'only': no dataset named {unknown[0]!r}")
    return names


def config_hash(section: Any) -> str:
    """Stable short hash of a config section, recorded as provenance in outputs."""
    canonical = json.dumps(section, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
