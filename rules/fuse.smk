# The optional fuse stage (fuse.enabled): one caption per object from its views' kept captions (an instruct LLM).
# With it, the triplets take the fused shard (rules/common.smk: fused_input).


rule tiny_fuse_model:
    output:
        directory(f"{paths.MODELS}/tiny-qwen2-instruct"),
    log:
        "logs/models/tiny_fuse_model.log",
    conda:
        "../envs/caption.yaml"
    script:
        "../workflow_scripts/tiny_fuse_model.py"


rule fuse_shard:
    input:
        unpack(fuse_model_inputs),
        ranked=rules.rank_shard.output.ranked,
    output:
        fused=paths.FUSED,
        failures=paths.failures("fuse"),
    params:
        fuse=FuseSettings.output_params(config["fuse"]),
    log:
        "logs/{dataset}/fuse/{shard}.log",
    benchmark:
        "logs/{dataset}/fuse/{shard}.benchmark.tsv"
    threads: config["fuse"]["threads"]
    resources:
        mem_mb=32000,
        gpu=1,
    conda:
        "../envs/caption.yaml"
    script:
        "../workflow_scripts/fuse.py"


rule fuse:
    input:
        per_shard(paths.FUSED),
