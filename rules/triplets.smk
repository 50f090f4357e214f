# Triplets, the dataset summary, exports to the ULIP-2 and OpenShape layouts, and frozen embeddings.


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


rule export_ulip_shard:
    input:
        "results/{dataset}/triplets/{shard}.parquet",
    output:
        "results/{dataset}/export/ulip/shards/{shard}.json",
    params:
        root=lambda w: f"results/{w.dataset}/export/ulip",
    log:
        "logs/{dataset}/export_ulip/{shard}.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/export_ulip.py"


rule export_ulip_captions:
    input:
        shards_of_dataset("results/{dataset}/export/ulip/shards/{shard}.json"),
    output:
        "results/{dataset}/export/ulip/captions.json",
    log:
        "logs/{dataset}/export_ulip/captions.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/merge_captions.py"


rule export_openshape_shard:
    input:
        "results/{dataset}/triplets/{shard}.parquet",
    output:
        "results/{dataset}/export/openshape/shards/{shard}.txt",
    params:
        root=lambda w: f"results/{w.dataset}/export/openshape",
    log:
        "logs/{dataset}/export_openshape/{shard}.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/export_openshape.py"


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


rule export_ulip:
    input:
        expand("results/{dataset}/export/ulip/captions.json", dataset=DATASETS),


rule export_openshape:
    input:
        per_shard("results/{dataset}/export/openshape/shards/{shard}.txt"),


rule embed:
    input:
        per_shard(f"results/{{dataset}}/embed/{config['embed']['name']}/{{shard}}.parquet"),
