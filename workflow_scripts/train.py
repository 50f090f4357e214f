# Thin adapter: train the 3D encoder of one dataset (see ulip2_pipeline.train.trainer).
import torch

from ulip2_pipeline.train.run import run_training
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
run_training(snakemake.input.triplets, snakemake.input.embed, snakemake.params.train, snakemake.params.embed,
             snakemake.params.up_axis, snakemake.params.out_dir, snakemake.output.model)
