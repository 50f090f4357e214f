# Thin adapter: category and caption text features for the OpenShape export, from the embed stage's CLIP
# (see ulip2_pipeline.stages.text_features).
import torch

from ulip2_pipeline.settings import EmbedSettings
from ulip2_pipeline.stages.text_features import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_shard(
    Inputs(snakemake.input.triplets, snakemake.wildcards.shard),
    job_settings(EmbedSettings, snakemake.params.embed, snakemake.config["embed"]),
    Outputs(snakemake.output[0]),
)
