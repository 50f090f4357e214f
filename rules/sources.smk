# Sources and the manifest: which objects a dataset has and which shard each is in.


rule demo_meshes:
    output:
        directory("results/{dataset}/demo_meshes"),
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
        seed=lambda w: config["datasets"][w.dataset]["seed"],
    log:
        "logs/{dataset}/demo_meshes.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/demo_meshes.py"


checkpoint manifest:
    input:
        unpack(source_inputs),
    output:
        manifest="results/{dataset}/manifest.parquet",
        failures="results/{dataset}/failures/manifest.parquet",
    params:
        dataset=dataset_config,
    log:
        "logs/{dataset}/manifest.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/manifest.py"


rule manifests:
    input:
        expand("results/{dataset}/manifest.parquet", dataset=DATASETS),
