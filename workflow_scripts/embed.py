# Thin adapter: frozen CLIP embeddings of one triplet shard (see ulip2_pipeline.stages.embed).
import torch

from ulip2_pipeline.settings import EmbedSettings
from ulip2_pipeline.stages.embed import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_shard(
    Inputs(snakemake.input.triplets, snakemake.wildcards.shard),
    job_settings(EmbedSettings, snakemake.params.embed, snakemake.config["embed"]),
    Outputs(snakemake.output[0]),
)
