# Thin adapter: one shard to OpenShape's training layout (see ulip2_pipeline.exports.openshape).
import logging

from ulip2_pipeline.exports.openshape import export_openshape_shard
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
listing = export_openshape_shard(
    snakemake.input.triplets,
    snakemake.input.embed,
    snakemake.input.text_features,
    snakemake.wildcards.dataset,
    snakemake.wildcards.shard,
    snakemake.params.root,
    snakemake.output[0],
    QualityFilter.from_config(snakemake.params.quality, snakemake.input.get("duplicates")),
)
logging.info("exported %d objects, skipped %d", len(listing["objects"]), len(listing["skipped"]))
for uid, reason in listing["skipped"].items():
    logging.warning("skipped %s: %s", uid, reason)
