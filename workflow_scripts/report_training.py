# Thin adapter: a training run's report page (see ulip2_pipeline.report.training).
from ulip2_pipeline.report.training import write_training_page
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
write_training_page(
    snakemake.input.metrics,
    snakemake.input.zero_shot,
    snakemake.wildcards.dataset,
    snakemake.wildcards.run,
    snakemake.output[0],
)
