# Thin adapter: OpenShape's split JSON (train.json) from the per-shard listings.
import logging

from ulip2_pipeline.exports.openshape import write_openshape_split
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
count = write_openshape_split(snakemake.input, snakemake.params.root, snakemake.output[0])
logging.info("%d objects in the split", count)
