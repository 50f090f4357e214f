# Thin adapter: render one shard's objects (see ulip2_pipeline.stages.render.stage).
from ulip2_pipeline.stages.render.stage import run_render_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
preset = snakemake.config["render_presets"][snakemake.params.dataset["render_preset"]]
settings = job_settings(snakemake.params.settings, preset)
run_render_shard(
    snakemake.input.manifest,
    snakemake.input.points,
    snakemake.wildcards.shard,
    snakemake.params.dataset,
    settings,
    snakemake.output.render,
    snakemake.output.failures,
    snakemake.params.blender_logs,
    threads=snakemake.threads,
)
