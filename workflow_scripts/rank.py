# Thin adapter: rank one shard's captions with CLIP (see ulip2_pipeline.stages.rank).
import torch

from ulip2_pipeline.stages.rank import run_rank_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_rank_shard(
    snakemake.input.render,
    snakemake.input.captions,
    snakemake.wildcards.shard,
    job_settings(snakemake.params.rank, snakemake.config["rank"]),
    snakemake.output.ranked,
    snakemake.output.failures,
)
