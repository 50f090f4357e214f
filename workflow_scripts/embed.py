# Thin adapter: frozen CLIP embeddings of one triplet shard (see ulip2_pipeline.stages.embed).
import torch

from ulip2_pipeline.stages.embed import run_embed_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = job_settings(snakemake.params.embed, snakemake.config["embed"])
run_embed_shard(snakemake.input.triplets, snakemake.wildcards.shard, settings, snakemake.output[0])
