# Thin adapter: one shard to the ULIP-2 (Objaverse) layout (see ulip2_pipeline.exports.ulip).
from ulip2_pipeline.exports.ulip import export_ulip_shard
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
export_ulip_shard(
    snakemake.input[0],
    snakemake.params.root,
    snakemake.output[0],
    QualityFilter.from_config(snakemake.params.quality, snakemake.input.get("duplicates")),
)
