# Thin adapter: the dataset summary (see ulip2_pipeline.stages.triplets.dataset_summary).
import json

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.stages.triplets import dataset_summary
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
summary = dataset_summary(snakemake.input.manifest, snakemake.input.manifest_failures, snakemake.input.triplets)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
