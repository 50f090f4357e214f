# Caption and rank: BLIP-2 writes captions for every view, CLIP keeps the best per view.


rule tiny_models:
    output:
        blip2=directory(f"{paths.MODELS}/tiny-blip2"),
        clip_rank=directory(f"{paths.MODELS}/tiny-clip-rank"),
        clip_embed=directory(f"{paths.MODELS}/tiny-clip-embed"),
    log:
        "logs/models/tiny_models.log",
    conda:
        "../envs/caption.yaml"
    script:
        "../workflow_scripts/tiny_models.py"


rule caption_shard:
    input:
        unpack(caption_model_inputs),
        render=rules.render_shard.output.render,
    output:
        captions=paths.CAPTIONS,
        failures=paths.failures("caption"),
    params:
        caption=CaptionSettings.output_params(config["caption"]),
    log:
        "logs/{dataset}/caption/{shard}.log",
    benchmark:
        "logs/{dataset}/caption/{shard}.benchmark.tsv"
    threads: config["caption"]["threads"]
    resources:
        mem_mb=24000,
        gpu=1,
    conda:
        "../envs/caption.yaml"
    script:
        "../workflow_scripts/caption.py"


rule rank_shard:
    input:
        unpack(rank_model_inputs),
        render=rules.render_shard.output.render,
        captions=rules.caption_shard.output.captions,
    output:
        ranked=paths.RANKED,
        failures=paths.failures("rank"),
    params:
        rank=RankSettings.output_params(config["rank"]),
    log:
        "logs/{dataset}/rank/{shard}.log",
    benchmark:
        "logs/{dataset}/rank/{shard}.benchmark.tsv"
    threads: config["rank"]["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    conda:
        "../envs/rank.yaml"
    script:
        "../workflow_scripts/rank.py"


rule caption:
    input:
        per_shard(paths.CAPTIONS),


rule rank:
    input:
        per_shard(paths.RANKED),
