# Thin adapter: join one shard's modalities into triplets (see ulip2_pipeline.stages.triplets).
from ulip2_pipeline.config import default_config
from ulip2_pipeline.settings import QualitySettings, TripletsSettings
from ulip2_pipeline.stages.triplets import Inputs, Outputs, run_shard
from ulip2_pipeline.workflow import log_to

log_to(snakemake.log[0])
run_shard(
    Inputs(**dict(snakemake.input.items()), shard=snakemake.wildcards.shard),
    TripletsSettings.from_config({"row_group_rows": snakemake.params.row_group_rows}),
    Outputs(snakemake.output.triplets, snakemake.output.failures),
    points=snakemake.params.points,
    provenance=snakemake.params.provenance,
    quality=QualitySettings.from_config({**default_config()["quality"], **snakemake.params.quality}),
)
