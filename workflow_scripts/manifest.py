# Thin adapter: list, check, hash and shard one dataset (see ulip2_pipeline.stages.manifest).
from ulip2_pipeline.settings import SourceSettings
from ulip2_pipeline.stages.manifest import run_manifest
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_manifest(
    SourceSettings.from_config(snakemake.params.source),
    snakemake.params.shard_size,
    snakemake.output.manifest,
    snakemake.output.failures,
    demo_dir=snakemake.input.get("demo_dir"),
)
