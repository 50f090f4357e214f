# Render: every view of every object of a shard with headless Blender, one Parquet file per shard.
# Depends on the points shard for each object's normalisation, so both share one frame.


rule render_shard:
    input:
        manifest=manifest_slice,
        points=rules.points_shard.output.points,
    output:
        render=paths.RENDER,
        failures=paths.failures("render"),
    params:
        dataset=dataset_config,
        settings=render_output_settings,
        blender_logs=lambda w: f"logs/{w.dataset}/render/{w.shard}",
    log:
        "logs/{dataset}/render/{shard}.log",
    benchmark:
        "logs/{dataset}/render/{shard}.benchmark.tsv"
    threads: lambda w: render_settings(w)["threads"]
    resources:
        # The Blender worker's memory guard plus the supervising process.
        mem_mb=lambda w: render_settings(w)["max_memory_mb"] + 1000,
        gpu=lambda w: int(render_settings(w)["device"] == "gpu"),
    conda:
        "../envs/render.yaml"
    script:
        "../workflow_scripts/render.py"


rule render:
    input:
        per_shard(paths.RENDER),
