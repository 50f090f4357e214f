# Thin adapter: sample one shard's objects (see ulip2_pipeline.stages.points.stage).
from ulip2_pipeline.settings import DatasetSettings
from ulip2_pipeline.stages.points.stage import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_shard(
    Inputs(snakemake.input.manifest, snakemake.wildcards.shard),
    DatasetSettings.from_config(snakemake.params.dataset),
    Outputs(snakemake.output.points, snakemake.output.failures),
)
