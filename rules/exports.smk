# Exports: the ULIP-2 (Objaverse) layout, ULIP's ShapeNet-55 layout, OpenShape's training layout, and the
# dataset card. Each shard job writes its objects' files and a small listing; a local merge job
# writes the files a loader starts from (captions.json, train.json, train.txt + taxonomy.json).
from ulip2_pipeline.exports.shapenet_ulip import shapenet_ulip_datasets

EMBED_NAME = config["embed"]["name"]


rule export_ulip_shard:
    input:
        rules.triplets_shard.output.triplets,
        unpack(duplicates_input),
    output:
        paths.export("ulip", "shards/{shard}.json"),
    params:
        quality=quality_filter_params(),
        root=lambda w: paths.fill(paths.EXPORT, dataset=w.dataset, layout="ulip"),
    log:
        "logs/{dataset}/export_ulip/{shard}.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/export_ulip.py"


rule export_ulip_captions:
    input:
        shards_of_dataset(paths.export("ulip", "shards/{shard}.json")),
    output:
        paths.export("ulip", "captions.json"),
    log:
        "logs/{dataset}/export_ulip/captions.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/merge_captions.py"


rule export_shapenet_ulip_shard:
    input:
        rules.triplets_shard.output.triplets,
        unpack(duplicates_input),
    output:
        paths.export("shapenet_ulip", "shards/{shard}.json"),
    params:
        quality=quality_filter_params(),
        root=lambda w: paths.fill(paths.EXPORT, dataset=w.dataset, layout="shapenet_ulip"),
    log:
        "logs/{dataset}/export_shapenet_ulip/{shard}.log",
    benchmark:
        "logs/{dataset}/export_shapenet_ulip/{shard}.benchmark.tsv",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/export_shapenet_ulip.py"


rule export_shapenet_ulip_lists:
    input:
        shards_of_dataset(paths.export("shapenet_ulip", "shards/{shard}.json")),
    output:
        train=paths.export("shapenet_ulip", "train.txt"),
        test=paths.export("shapenet_ulip", "test.txt"),
        taxonomy=paths.export("shapenet_ulip", "taxonomy.json"),
        depth_encoding=paths.export("shapenet_ulip", "depth_encoding.json"),
    params:
        root=lambda w: paths.fill(paths.EXPORT, dataset=w.dataset, layout="shapenet_ulip"),
    log:
        "logs/{dataset}/export_shapenet_ulip/lists.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/merge_shapenet_ulip.py"


rule openshape_text_features_shard:
    input:
        unpack(embed_model_inputs),
        triplets=rules.triplets_shard.output.triplets,
    output:
        paths.TEXT_FEATURES,
    params:
        embed=EmbedSettings.output_params(config["embed"]),
    log:
        "logs/{dataset}/text_features/{model}/{shard}.log",
    benchmark:
        "logs/{dataset}/text_features/{model}/{shard}.benchmark.tsv",
    threads: config["embed"]["threads"]
    resources:
        mem_mb=16000,
        gpu=1,
    conda:
        "../envs/rank.yaml"
    script:
        "../workflow_scripts/text_features.py"


rule export_openshape_shard:
    input:
        unpack(duplicates_input),
        triplets=rules.triplets_shard.output.triplets,
        embed=paths.fill(paths.EMBED, model=EMBED_NAME),
        text_features=paths.fill(paths.TEXT_FEATURES, model=EMBED_NAME),
    output:
        paths.export("openshape", "shards/{shard}.json"),
    params:
        quality=quality_filter_params(),
        root=lambda w: paths.fill(paths.EXPORT, dataset=w.dataset, layout="openshape"),
    log:
        "logs/{dataset}/export_openshape/{shard}.log",
    benchmark:
        "logs/{dataset}/export_openshape/{shard}.benchmark.tsv",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/export_openshape.py"


rule export_openshape_split:
    input:
        shards_of_dataset(paths.export("openshape", "shards/{shard}.json")),
    output:
        paths.export("openshape", "train.json"),
    params:
        root=lambda w: paths.fill(paths.EXPORT, dataset=w.dataset, layout="openshape"),
    log:
        "logs/{dataset}/export_openshape/split.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/merge_openshape_split.py"


rule dataset_card_file:
    input:
        triplets=shards_of_dataset(paths.TRIPLETS),
        summary=rules.summary.output[0],
    output:
        paths.DATASET_CARD,
    log:
        "logs/{dataset}/dataset_card.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/dataset_card.py"


rule export_ulip:
    input:
        expand(paths.export("ulip", "captions.json"), dataset=DATASETS),


rule export_shapenet_ulip:
    input:
        expand(paths.export("shapenet_ulip", "train.txt"), dataset=shapenet_ulip_datasets(config, DATASETS)),


rule export_openshape:
    input:
        expand(paths.export("openshape", "train.json"), dataset=DATASETS),


rule dataset_card:
    input:
        expand(paths.DATASET_CARD, dataset=DATASETS),
