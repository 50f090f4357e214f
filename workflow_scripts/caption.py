# Thin adapter: caption one shard's rendered views (see ulip2_pipeline.stages.caption).
import torch

from ulip2_pipeline.settings import CaptionSettings
from ulip2_pipeline.stages.caption import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_shard(
    Inputs(snakemake.input.render, snakemake.wildcards.shard),
    job_settings(CaptionSettings, snakemake.params.caption, snakemake.config["caption"]),
    Outputs(snakemake.output.captions, snakemake.output.failures),
)
