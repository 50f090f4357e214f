# Thin adapter: sample one shard's objects (see ulip2_pipeline.stages.points.stage).
from ulip2_pipeline.stages.points.stage import run_points_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_points_shard(
    snakemake.input.manifest,
    snakemake.wildcards.shard,
    snakemake.params.dataset,
    snakemake.output.points,
    snakemake.output.failures,
)
