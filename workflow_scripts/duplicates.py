# Thin adapter: the dataset's duplicates table (see ulip2_pipeline.stages.duplicates).
from ulip2_pipeline.stages.duplicates import write_duplicates
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
write_duplicates(snakemake.input.triplets, snakemake.params.duplicate_distance, snakemake.output[0])
