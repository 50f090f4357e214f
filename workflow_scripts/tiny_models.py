# Thin adapter: build the tiny offline BLIP-2 and OpenCLIP models (see ulip2_pipeline.tiny_models).
from ulip2_pipeline.tiny_models import build_tiny_blip2, build_tiny_clip
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
build_tiny_blip2(snakemake.output.blip2)
build_tiny_clip(snakemake.output.clip)
