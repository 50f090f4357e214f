# Triplets, the dataset summary and frozen embeddings (exports: rules/exports.smk).


rule triplets_shard:
    input:
        unpack(fused_input),
        manifest=manifest_slice,
        points=rules.points_shard.output.points,
        render=rules.render_shard.output.render,
        captions=rules.caption_shard.output.captions,
        ranked=rules.rank_shard.output.ranked,
        points_failures=rules.points_shard.output.failures,
        render_failures=rules.render_shard.output.failures,
        caption_failures=rules.caption_shard.output.failures,
        rank_failures=rules.rank_shard.output.failures,
    output:
        triplets=paths.TRIPLETS,
        failures=paths.failures("triplets"),
    params:
        provenance=triplet_provenance,
        points=lambda w: config["datasets"][w.dataset]["points"]["count"],
        row_group_rows=config["triplets"]["row_group_rows"],
        quality=quality_flag_params(),
    log:
        "logs/{dataset}/triplets/{shard}.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/triplets.py"


rule summary:
    input:
        manifest=rules.manifest.output.manifest,
        manifest_failures=rules.manifest.output.failures,
        triplets=shards_of_dataset(paths.TRIPLETS),
    output:
        paths.SUMMARY,
    log:
        "logs/{dataset}/summary.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/summary.py"


rule duplicates:
    input:
        triplets=shards_of_dataset(paths.TRIPLETS),
    output:
        paths.DUPLICATES,
    params:
        duplicate_distance=config["quality"]["duplicate_distance"],
    log:
        "logs/{dataset}/duplicates.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/duplicates.py"


rule embed_shard:
    input:
        unpack(embed_model_inputs),
        triplets=rules.triplets_shard.output.triplets,
    output:
        paths.EMBED,
    params:
        embed=EmbedSettings.output_params(config["embed"]),
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
        per_shard(paths.TRIPLETS),
        expand(paths.SUMMARY, dataset=DATASETS),
        expand(paths.DUPLICATES, dataset=DATASETS),


rule embed:
    input:
        per_shard(paths.fill(paths.EMBED, model=config["embed"]["name"])),
