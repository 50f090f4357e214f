# Training a Point-BERT against the frozen CLIP, and its zero-shot evaluation: the end of the DAG.
# train.gpus > 1 runs the training under torchrun (one rank per GPU, or CPU processes with gloo).


rule train_run:
    input:
        unpack(embed_model_inputs),
        unpack(duplicates_input),
        triplets=shards_of_dataset(paths.TRIPLETS),
        embed=shards_of_dataset(paths.fill(paths.EMBED, model=config["embed"]["name"])),
    output:
        model=paths.MODEL,
        metrics=paths.METRICS,
    params:
        # batch_size changes what training learns; workers, threads and device only its speed.
        train=TrainSettings.output_params(config["train"]),
        embed=EmbedSettings.output_params(config["embed"]),
        up_axis=lambda w: config["datasets"][w.dataset]["up_axis"],
        out_dir=lambda w: paths.fill(paths.TRAIN_RUN, dataset=w.dataset, run=w.run),
        quality=quality_filter_params(),
    log:
        "logs/{dataset}/train/{run}.log",
    threads: config["train"]["threads"]
    resources:
        mem_mb=32000,
        gpu=config["train"]["gpus"],
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train.py"


rule eval_run:
    input:
        unpack(embed_model_inputs),
        model=model_to_evaluate,
        triplets=shards_of_dataset(paths.TRIPLETS),
        embed=shards_of_dataset(paths.fill(paths.EMBED, model=config["embed"]["name"])),
    output:
        paths.ZERO_SHOT,
    params:
        eval=EvalSettings.output_params(config["eval"]),
        embed=EmbedSettings.output_params(config["embed"]),
        points={k: config["train"][k] for k in ("num_points", "holdout_fraction")},
    log:
        "logs/{dataset}/eval/{run}.log",
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/eval.py"


rule train:
    input:
        expand(paths.MODEL, dataset=DATASETS, run=config["train"]["run"]),


rule eval:
    input:
        expand(paths.ZERO_SHOT, dataset=DATASETS, run=config["train"]["run"]),
