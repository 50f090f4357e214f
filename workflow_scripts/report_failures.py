# Thin adapter: the dataset's failures page (see ulip2_pipeline.report.failures).
from ulip2_pipeline.report.failures import write_failures_page
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
write_failures_page(
    snakemake.input.summary,
    list(snakemake.input.failures),
    snakemake.wildcards.dataset,
    snakemake.params.examples,
    snakemake.output[0],
)
