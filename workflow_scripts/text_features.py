# Thin adapter: category and caption text features for the OpenShape export, from the embed stage's CLIP
# (see ulip2_pipeline.stages.text_features).
import torch

from ulip2_pipeline.stages.text_features import run_text_features_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = job_settings(snakemake.params.embed, snakemake.config["embed"])
run_text_features_shard(snakemake.input.triplets, snakemake.wildcards.shard, settings, snakemake.output[0])
