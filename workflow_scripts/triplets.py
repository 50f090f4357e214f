# Thin adapter: join one shard's modalities into triplets (see ulip2_pipeline.triplets).
from ulip2_pipeline.triplets import run_triplets_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_triplets_shard(snakemake.input.points, snakemake.input.render, snakemake.input.ranked,
                   snakemake.wildcards.shard, snakemake.params.provenance, snakemake.params.points,
                   snakemake.params.row_group_rows, snakemake.output[0])
