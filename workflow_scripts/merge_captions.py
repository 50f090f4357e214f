# Thin adapter: merge the per-shard caption fragments into the ULIP-2 captions JSON.
from ulip2_pipeline.exports.ulip import merge_json_fragments
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
merge_json_fragments(snakemake.input, snakemake.output[0])
