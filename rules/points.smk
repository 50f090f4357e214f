# Points: 10k coloured surface samples per object, FPS-ordered, one Parquet file per shard.


rule points_shard:
    input:
        manifest=manifest_slice,
    output:
        points=paths.POINTS,
        failures=paths.failures("points"),
    params:
        dataset=dataset_config,
    log:
        "logs/{dataset}/points/{shard}.log",
    benchmark:
        "logs/{dataset}/points/{shard}.benchmark.tsv"
    threads: 1
    resources:
        # The worker's memory guard plus the supervising process.
        mem_mb=lambda w: dataset_config(w)["points"]["max_memory_mb"] + 1000,
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/points.py"


rule points:
    input:
        per_shard(paths.POINTS),
