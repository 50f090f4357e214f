# Thin adapter: generate the embedded demo set (see ulip2_pipeline.sources.demo).
from ulip2_pipeline.settings import SourceSettings
from ulip2_pipeline.sources.demo import generate_demo_set
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
source = SourceSettings.from_config(snakemake.params.source)
generate_demo_set(snakemake.output[0], source.objects_per_class, source.broken_objects, seed=snakemake.params.seed)
