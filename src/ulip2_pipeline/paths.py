"""Where every output of the workflow lives, written once for the rules, the command-line tools and the report.

Patterns are relative to the working directory (Snakemake's ``-d``). Their ``{dataset}``,
``{shard}``, ``{stage}``, ``{model}`` and ``{run}`` fields are Snakemake wildcards in the
rules and are filled with :func:`fill` elsewhere.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"
MODELS = f"{RESULTS}/models"
DATASET = f"{RESULTS}/{{dataset}}"

DEMO_MESHES = f"{DATASET}/demo_meshes"
MANIFEST = f"{DATASET}/manifest.parquet"
FAILURES = f"{DATASET}/failures/{{stage}}/{{shard}}.parquet"
MANIFEST_FAILURES = f"{DATASET}/failures/manifest.parquet"
POINTS = f"{DATASET}/points/{{shard}}.parquet"
RENDER = f"{DATASET}/render/{{shard}}.parquet"
CAPTIONS = f"{DATASET}/captions/{{shard}}.parquet"
RANKED = f"{DATASET}/ranked/{{shard}}.parquet"
FUSED = f"{DATASET}/fused/{{shard}}.parquet"  # the optional fuse stage: one caption per object
TRIPLETS = f"{DATASET}/triplets/{{shard}}.parquet"
SUMMARY = f"{DATASET}/summary.json"
DUPLICATES = f"{DATASET}/duplicates.parquet"  # near-identical objects (quality.duplicate_distance)
EMBED = f"{DATASET}/embed/{{model}}/{{shard}}.parquet"
TEXT_FEATURES = f"{DATASET}/text_features/{{model}}/{{shard}}.parquet"
DATASET_CARD = f"{DATASET}/README.md"
EXPORT = f"{DATASET}/export/{{layout}}"
TRAIN_RUN = f"{DATASET}/train/{{run}}"
MODEL = f"{TRAIN_RUN}/model.pt"
METRICS = f"{TRAIN_RUN}/metrics.json"
ZERO_SHOT = f"{DATASET}/eval/{{run}}/zero_shot.json"
REPORT = f"{DATASET}/report"


def fill(pattern: str, **values: str) -> str:
    """``pattern`` with the given fields filled in; fields not given stay wildcards."""
    for name, value in values.items():
        pattern = pattern.replace(f"{{{name}}}", str(value))
    return pattern


def failures(stage: str) -> str:
    """The pattern of one stage's per-shard failure ledgers."""
    return fill(FAILURES, stage=stage)


def export(layout: str, name: str) -> str:
    """A file of one export layout (``ulip``, ``shapenet_ulip``, ``openshape``)."""
    return f"{fill(EXPORT, layout=layout)}/{name}"


def under(results: str | Path, pattern: str, **values: str) -> Path:
    """``pattern`` filled, with its leading ``results/`` replaced by ``results`` (a folder given by a user)."""
    relative = Path(fill(pattern, **values)).relative_to(RESULTS)
    return Path(results) / relative
