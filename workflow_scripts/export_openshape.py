# Thin adapter: one shard to the OpenShape layout (see ulip2_pipeline.exports).
from ulip2_pipeline.exports import export_openshape_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
export_openshape_shard(snakemake.input[0], snakemake.params.root, snakemake.output[0])
