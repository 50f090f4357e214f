# Thin adapter: the dataset's quality page (see ulip2_pipeline.report.quality).
from ulip2_pipeline.report.quality import write_quality_page
from ulip2_pipeline.settings import ReportSettings
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
write_quality_page(
    list(snakemake.input.triplets),
    snakemake.input.duplicates,
    snakemake.wildcards.dataset,
    ReportSettings.from_config(snakemake.params.report),
    snakemake.output[0],
    snakemake.params.quality,
)
