# Thin adapter: render one shard's objects (see ulip2_pipeline.stages.render.stage).
from ulip2_pipeline.settings import DatasetSettings, RenderSettings
from ulip2_pipeline.stages.render.stage import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
preset = snakemake.config["render_presets"][snakemake.params.dataset["render_preset"]]
settings = job_settings(RenderSettings, snakemake.params.settings, preset)
run_shard(
    Inputs(snakemake.input.manifest, snakemake.input.points, snakemake.wildcards.shard),
    DatasetSettings.from_config(snakemake.params.dataset),
    settings.replace(threads=snakemake.threads),  # Snakemake may give fewer threads than the preset asks for
    Outputs(snakemake.output.render, snakemake.output.failures, snakemake.params.blender_logs),
)
