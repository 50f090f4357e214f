# Thin adapter: join one shard's modalities into triplets (see ulip2_pipeline.stages.triplets).
from ulip2_pipeline.stages.triplets import run_triplets_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
inputs = snakemake.input
ledgers = {
    "points": inputs.points_failures,
    "render": inputs.render_failures,
    "caption": inputs.caption_failures,
    "rank": inputs.rank_failures,
}
run_triplets_shard(
    inputs.manifest,
    inputs.points,
    inputs.render,
    inputs.captions,
    inputs.ranked,
    ledgers,
    snakemake.wildcards.shard,
    snakemake.params.provenance,
    snakemake.params.points,
    snakemake.params.row_group_rows,
    snakemake.output.triplets,
    snakemake.output.failures,
)
