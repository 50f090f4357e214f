# Thin adapter: zero-shot evaluation of a trained encoder (see ulip2_pipeline.train.run).
import torch

from ulip2_pipeline.train.run import run_evaluation
from ulip2_pipeline.workflow import job_settings, log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_evaluation(
    snakemake.input.model,
    job_settings(snakemake.params.eval, snakemake.config["eval"]),
    snakemake.params.embed,
    snakemake.params.points,
    snakemake.input.triplets,
    snakemake.output[0],
)
