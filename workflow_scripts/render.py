# Thin adapter: render one shard's objects (see ulip2_pipeline.render.stage).
from ulip2_pipeline.render.stage import run_render_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_render_shard(snakemake.input.manifest, snakemake.input.points, snakemake.wildcards.shard,
                 snakemake.params.dataset, snakemake.params.settings, snakemake.output.render,
                 snakemake.output.failures, snakemake.params.blender_logs, threads=snakemake.threads)
