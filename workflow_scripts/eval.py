# Thin adapter: zero-shot evaluation and held-out retrieval of an encoder (see ulip2_pipeline.train.run).
import torch

from ulip2_pipeline.settings import EmbedSettings, EvalSettings
from ulip2_pipeline.train.run import run_evaluation
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_evaluation(
    snakemake.input.model,
    job_settings(EvalSettings, snakemake.params.eval, snakemake.config["eval"]),
    job_settings(EmbedSettings, snakemake.params.embed, snakemake.config["embed"]),
    snakemake.params.points["num_points"],
    snakemake.params.points["holdout_fraction"],
    snakemake.input.triplets,
    snakemake.output[0],
    embed_paths=snakemake.input.embed,
)
