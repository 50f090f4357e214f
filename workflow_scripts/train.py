# Thin adapter: train the 3D encoder of one dataset, on train.gpus ranks (see ulip2_pipeline.train.launch).
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.settings import EmbedSettings, TrainSettings
from ulip2_pipeline.train.launch import TrainJob, launch
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
job = TrainJob(
    triplets=list(snakemake.input.triplets),
    embed=list(snakemake.input.embed),
    train=job_settings(TrainSettings, snakemake.params.train, snakemake.config["train"]),
    embed_settings=job_settings(EmbedSettings, snakemake.params.embed, snakemake.config["embed"]),
    up_axis=snakemake.params.up_axis,
    out_dir=snakemake.params.out_dir,
    model=snakemake.output.model,
    log=snakemake.log[0],
    quality=QualityFilter.from_config(snakemake.params.quality, snakemake.input.get("duplicates")).as_config(),
)
launch(job)
