# Thin adapter: one caption per object of one ranked shard (see ulip2_pipeline.stages.fuse).
import torch

from ulip2_pipeline.settings import FuseSettings
from ulip2_pipeline.stages.fuse import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_shard(
    Inputs(snakemake.input.ranked, snakemake.wildcards.shard),
    job_settings(FuseSettings, snakemake.params.fuse, snakemake.config["fuse"]),
    Outputs(snakemake.output.fused, snakemake.output.failures),
)
