# Thin adapter: build the tiny offline stand-ins of BLIP-2 OPT and the two CLIPs (see ulip2_pipeline.models.tiny_models).
from ulip2_pipeline.models.tiny_models import build_tiny_models
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
build_tiny_models(snakemake.output.blip2, snakemake.output.clip_rank, snakemake.output.clip_embed)
