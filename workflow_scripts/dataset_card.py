# Thin adapter: the dataset card results/{dataset}/README.md (see ulip2_pipeline.exports.card).
from ulip2_pipeline.exports.card import write_dataset_card
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
write_dataset_card(snakemake.wildcards.dataset, snakemake.input.triplets, snakemake.input.summary, snakemake.output[0])
