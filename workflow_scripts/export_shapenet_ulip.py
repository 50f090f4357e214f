# Thin adapter: one shard to ULIP's ShapeNet-55 layout (see ulip2_pipeline.exports.shapenet_ulip).
import logging

from ulip2_pipeline.exports.shapenet_ulip import export_shapenet_ulip_shard
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
fragment = export_shapenet_ulip_shard(
    snakemake.input[0],
    snakemake.params.root,
    snakemake.output[0],
    QualityFilter.from_config(snakemake.params.quality, snakemake.input.get("duplicates")),
)
logging.info("exported %d objects, skipped %d", len(fragment["objects"]), len(fragment["skipped"]))
for uid, reason in fragment["skipped"].items():
    logging.warning("skipped %s: %s", uid, reason)
