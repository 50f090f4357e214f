"""Each stage's settings as a typed, frozen object, built once from the validated configuration.

A field declared with ``throughput()`` changes only how fast a job runs (batch size,
threads, device, loader workers): the rules leave it out of ``params:``
(``output_params``), so changing it reruns nothing. Every other field changes what a
job writes, is in ``params:``, and Snakemake reruns the job when it changes. Where an
output does depend on a throughput field (the numeric precision a device implies),
the output records it in its metadata.

Fields have no defaults here: the schema (config.schema.yaml) is their one home, and
validation fills them in. ``tests/test_settings.py`` keeps the fields and the schema equal.
This module stays light (no torch), because the Snakefile imports it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, TypedDict

from ulip2_pipeline.config import ConfigError


def throughput() -> Any:
    """A field that changes only speed, never outputs."""
    return field(metadata={"throughput": True})


def _frozen(value: Any) -> Any:
    """Lists become tuples (so settings are hashable and cannot be edited in place)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The configuration's own form of a value: tuples back to lists, settings back to dicts."""
    if isinstance(value, Settings):
        return value.as_config()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of every section's settings."""

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> typing.Self:
        """The settings of a validated configuration section (every key present, defaults filled in)."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(section) - set(names))
        missing = [name for name in names if name not in section]
        problems = [f"unknown keys {unknown}"] if unknown else []
        if missing:
            problems.append(f"missing keys {missing} (validate the configuration first: it fills defaults)")
        if problems:
            raise ConfigError(f"{cls.__name__}: " + "; ".join(problems))
        hints = typing.get_type_hints(cls)
        values = {}
        for name in names:
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, Settings):
                values[name] = kind.from_config(section[name])
            else:
                values[name] = _frozen(section[name])
        return cls(**values)

    @classmethod
    def throughput_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.metadata.get("throughput"))

    @classmethod
    def output_params(cls, section: Mapping[str, Any]) -> dict[str, Any]:
        """``section`` without its throughput fields, in its own key order: a rule's ``params:``.

        A plain dict in the configuration's order, so the params Snakemake records (their repr)
        are the same from run to run."""
        skip = cls.throughput_fields()
        return {key: value for key, value in section.items() if key not in skip}

    def as_params(self) -> dict[str, Any]:
        """The output settings alone (what a rule's ``params:`` hold), in field order."""
        return self.output_params(self.as_config())

    def as_config(self) -> dict[str, Any]:
        """The settings as the configuration section they came from (JSON-ready)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> typing.Self:
        return dataclasses.replace(self, **{k: _frozen(v) for k, v in changes.items()})


@dataclass(frozen=True, kw_only=True)
class PointsSettings(Settings):
    count: int
    prefix_sizes: tuple[int, ...]
    default_rgb: tuple[float, float, float]
    max_faces: int
    timeout_s: float
    max_memory_mb: int


@dataclass(frozen=True, kw_only=True)
class SourceSettings(Settings):
    """Where a dataset's objects come from; ``from_config`` picks the class of the section's ``kind``."""

    kind: str

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SourceSettings:
        if cls is not SourceSettings:
            return super().from_config(section)
        kinds = {"folder": FolderSource, "shapenet": ShapeNetSource, "objaverse": ObjaverseSource, "demo": DemoSource}
        if section.get("kind") not in kinds:
            raise ConfigError(f"source: unknown kind {section.get('kind')!r} (one of {', '.join(kinds)})")
        return kinds[section["kind"]].from_config(section)


@dataclass(frozen=True, kw_only=True)
class FolderSource(SourceSettings):
    path: str
    extensions: tuple[str, ...]
    category: str


@dataclass(frozen=True, kw_only=True)
class ShapeNetSource(SourceSettings):
    path: str
    synsets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ObjaverseSource(SourceSettings):
    uids: tuple[str, ...]
    uids_file: str | None
    cache_dir: str
    download_processes: int
    categories: str


@dataclass(frozen=True, kw_only=True)
class DemoSource(SourceSettings):
    objects_per_class: int
    broken_objects: int


@dataclass(frozen=True, kw_only=True)
class DatasetSettings(Settings):
    source: SourceSettings
    shard_size: int
    render_preset: str
    up_axis: str
    seed: int
    points: PointsSettings


@dataclass(frozen=True, kw_only=True)
class RenderSettings(Settings):
    """A render preset."""

    views: int
    elevation_deg: float
    resolution: int
    depth: bool
    fov_deg: float
    distance: float | None
    engine: str
    samples: int
    seed: int
    background: str
    ambient: float
    key_light: float
    fill_light: float
    exposure: float
    view_transform: str
    max_faces: int
    timeout_s: float
    max_memory_mb: int
    missing_texture_rgb: tuple[float, float, float]
    device: str = throughput()
    threads: int = throughput()


@dataclass(frozen=True, kw_only=True)
class CaptionSettings(Settings):
    model: str
    num_captions: int
    top_p: float
    max_new_tokens: int
    temperature: float
    prompt: str
    do_sample: bool
    precision: str
    seed: int
    batch_size: int = throughput()
    device: str = throughput()
    threads: int = throughput()


@dataclass(frozen=True, kw_only=True)
class FuseSettings(Settings):
    """The optional fuse stage: one caption per object from its views' kept captions (an instruct LLM)."""

    enabled: bool
    model: str
    system: str
    instruction: str
    max_new_tokens: int
    do_sample: bool
    top_p: float
    temperature: float
    seed: int
    precision: str
    batch_size: int = throughput()
    device: str = throughput()
    threads: int = throughput()


@dataclass(frozen=True, kw_only=True)
class ClipSettings(Settings):
    """An OpenCLIP model: ``arch`` and ``pretrained`` (a tag or a file), ``arch_config`` for local architectures."""

    arch: str
    pretrained: str | None
    arch_config: str | None
    precision: str
    batch_size: int = throughput()
    device: str = throughput()
    threads: int = throughput()

    @property
    def model_name(self) -> str:
        return f"{self.arch}/{self.pretrained}"


@dataclass(frozen=True, kw_only=True)
class RankSettings(ClipSettings):
    top_k: int


@dataclass(frozen=True, kw_only=True)
class EmbedSettings(ClipSettings):
    name: str  # the embeddings' folder name under results/{dataset}/embed/


@dataclass(frozen=True, kw_only=True)
class TripletsSettings(Settings):
    row_group_rows: int


@dataclass(frozen=True, kw_only=True)
class QualitySettings(Settings):
    """Thresholds that make flags (the triplets stage's and the duplicates table's params) and the
    filters that leave flagged data out (training's and the exports' params)."""

    low_contrast_below: float
    blank_below: float
    tiny_coverage: float
    outlier_max_fraction: float
    outlier_min_spread: float
    duplicate_distance: float
    drop_objects: tuple[str, ...]
    drop_views: tuple[str, ...]
    drop_duplicates: bool

    FLAG_FIELDS = ("low_contrast_below", "blank_below", "tiny_coverage", "outlier_max_fraction", "outlier_min_spread")
    FILTER_FIELDS = ("drop_objects", "drop_views", "drop_duplicates")


@dataclass(frozen=True, kw_only=True)
class TrainSettings(Settings):
    run: str
    model: str
    num_points: int
    text_source: str
    mix_category_prob: float
    towers: str
    epochs: int
    batch_size: int  # not a speed knob: the batch is the contrastive loss's set of negatives
    gpus: int
    accumulate: int
    lr: float
    min_lr: float
    weight_decay: float
    warmup_epochs: float
    augment: bool
    holdout_fraction: float
    shuffle_buffer: int
    amp: bool
    seed: int
    workers: int = throughput()
    device: str = throughput()
    threads: int = throughput()


class BenchmarkSpec(TypedDict, total=False):
    """One zero-shot benchmark (``eval.benchmarks``); ``path`` and ``split`` where its format needs them."""

    name: str
    # demo_heldout | modelnet40_ulip2 | modelnet40_ulip | openshape_modelnet40 | openshape_lvis | openshape
    # (= openshape_lvis) | ulip2_lvis | scanobjectnn | openshape_scanobjectnn: train/benchmarks.py's readers
    format: str
    path: str  # the folder of the benchmark's files (all but demo_heldout)
    split: str  # a file inside path replacing the format's default (split JSON, h5 or .npy)


@dataclass(frozen=True, kw_only=True)
class EvalSettings(Settings):
    benchmarks: tuple[BenchmarkSpec, ...]
    checkpoint: str | None
    checkpoint_format: str
    batch_size: int = throughput()
    device: str = throughput()


@dataclass(frozen=True, kw_only=True)
class ReportSettings(Settings):
    """The visual report (``snakemake --report``)."""

    sample_objects: int
    extremes: int
    point_objects: int
    point_views: int
    thumbnail_px: int
    failure_examples: int
