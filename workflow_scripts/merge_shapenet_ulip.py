# Thin adapter: ULIP's ShapeNet-55 lists (train.txt, test.txt, taxonomy.json) from the shard fragments.
import logging

from ulip2_pipeline.exports.shapenet_ulip import merge_shapenet_ulip
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
count = merge_shapenet_ulip(snakemake.input, snakemake.params.root)
logging.info("%d objects in train.txt", count)
