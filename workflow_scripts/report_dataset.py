# Thin adapter: the dataset's report pages (see ulip2_pipeline.report.pages).
from ulip2_pipeline.report.pages import write_dataset_pages
from ulip2_pipeline.settings import ReportSettings
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
outputs = {name: snakemake.output[name] for name in ("sheet", "captions", "histograms", "points")}
write_dataset_pages(
    list(snakemake.input.triplets),
    list(snakemake.input.ranked),
    snakemake.wildcards.dataset,
    ReportSettings.from_config(snakemake.params.report),
    outputs,
)
