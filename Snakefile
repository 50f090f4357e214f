# ulip2-pipeline: raw 3D objects -> ULIP-2 triplets. Wiring only; the logic lives in
# src/ulip2_pipeline. Targets: all (default), manifests, points, render, caption, rank, fuse, triplets,
# embed, export_ulip, export_openshape, export_shapenet_ulip, dataset_card, train, eval, report.
# See README.md.
from ulip2_pipeline.config import validate_config


configfile: "config.yaml"


report: "report/workflow.rst"


validate_config(config)  # against config.schema.yaml, which the package ships


include: "rules/common.smk"
include: "rules/sources.smk"
include: "rules/points.smk"
include: "rules/render.smk"
include: "rules/caption.smk"
include: "rules/fuse.smk"
include: "rules/triplets.smk"
include: "rules/exports.smk"
include: "rules/train.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.points.input,
        rules.render.input,
        rules.caption.input,
        rules.rank.input,
        rules.triplets.input,
        rules.embed.input,
        rules.export_ulip.input,
        rules.export_openshape.input,
        rules.export_shapenet_ulip.input,
        rules.dataset_card.input,
        rules.eval.input,
        rules.report.input,
