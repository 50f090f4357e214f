# Triplets, the dataset summary and frozen embeddings (exports: rules/exports.smk).


rule triplets_shard:
    input:
        points="results/{dataset}/points/{shard}.parquet",
        render="results/{dataset}/render/{shard}.parquet",
        ranked="results/{dataset}/ranked/{shard}.parquet",
    output:
        "results/{dataset}/triplets/{shard}.parquet",
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
        triplets=shards_of_dataset("results/{dataset}/triplets/{shard}.parquet"),
        failures=failure_files,
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
