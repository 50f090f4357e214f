# Thin adapter: rank one shard's captions with CLIP (see ulip2_pipeline.stages.rank).
import torch

from ulip2_pipeline.settings import RankSettings
from ulip2_pipeline.stages.rank import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_shard(
    Inputs(snakemake.input.render, snakemake.input.captions, snakemake.wildcards.shard),
    job_settings(RankSettings, snakemake.params.rank, snakemake.config["rank"]),
    Outputs(snakemake.output.ranked, snakemake.output.failures),
)
