# Thin adapter: build the tiny offline stand-in of Qwen2.5-7B-Instruct for the fuse stage (see
# ulip2_pipeline.models.tiny_models.build_tiny_qwen2_instruct).
from ulip2_pipeline.models.tiny_models import build_tiny_qwen2_instruct
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
build_tiny_qwen2_instruct(snakemake.output[0])
