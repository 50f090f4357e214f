# Triplets, the dataset summary and frozen embeddings (exports: rules/exports.smk).


rule triplets_shard:
    input:
        manifest=manifest_slice,
        points="results/{dataset}/points/{shard}.parquet",
        render="results/{dataset}/render/{shard}.parquet",
        captions="results/{dataset}/captions/{shard}.parquet",
        ranked="results/{dataset}/ranked/{shard}.parquet",
        points_failures="results/{dataset}/failures/points/{shard}.parquet",
        render_failures="results/{dataset}/failures/render/{shard}.parquet",
        caption_failures="results/{dataset}/failures/caption/{shard}.parquet",
        rank_failures="results/{dataset}/failures/rank/{shard}.parquet",
    output:
        triplets="results/{dataset}/triplets/{shard}.parquet",
        failures="results/{dataset}/failures/triplets/{shard}.parquet",
    params:
        provenance=triplet_provenance,
        points=lambda w: config["datasets"][w.dataset]["points"]["count"],
        row_group_rows=config["triplets"]["row_group_rows"],
    log:
        "logs/{dataset}/triplets/{shard}.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/triplets.py"


rule summary:
    input:
        manifest="results/{dataset}/manifest.parquet",
        manifest_failures="results/{dataset}/failures/manifest.parquet",
        triplets=shards_of_dataset("results/{dataset}/triplets/{shard}.parquet"),
    output:
        "results/{dataset}/summary.json",
    log:
        "logs/{dataset}/summary.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/summary.py"


rule embed_shard:
    input:
        unpack(embed_model_inputs),
        triplets="results/{dataset}/triplets/{shard}.parquet",
    output:
        "results/{dataset}/embed/{model}/{shard}.parquet",
    params:
        embed=output_settings(config["embed"]),
    log:
        "logs/{dataset}/embed/{model}/{shard}.log",
    threads: config["embed"]["threads"]
    resources:
        mem_mb=16000,
        gpu=1,
    conda:
        "../envs/rank.yaml"
    script:
        "../workflow_scripts/embed.py"


rule triplets:
    input:
        per_shard("results/{dataset}/triplets/{shard}.parquet"),
        expand("results/{dataset}/summary.json", dataset=DATASETS),


rule embed:
    input:
        per_shard(f"results/{{dataset}}/embed/{config['embed']['name']}/{{shard}}.parquet"),
