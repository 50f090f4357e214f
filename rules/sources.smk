# Sources and the manifest: which objects a dataset has and which shard each is in.


rule demo_meshes:
    output:
        directory(paths.DEMO_MESHES),
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
        seed=lambda w: config["datasets"][w.dataset]["seed"],
    log:
        "logs/{dataset}/demo_meshes.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/demo_meshes.py"


# Rescan a source with `snakemake <target> --forcerun manifest` (a folder has no input that
# could tell Snakemake it changed; a uids_file is an input, so editing it rescans by itself).
# The previous manifest is kept (update) so that objects keep their shards and unchanged files
# are not hashed again; the rule also writes results/{dataset}/manifest/{shard}.parquet, the
# slices the shard jobs read, rewriting only the slices whose objects changed.
checkpoint manifest:
    input:
        unpack(source_inputs),
    output:
        manifest=update(paths.MANIFEST),
        failures=paths.MANIFEST_FAILURES,
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
        shard_size=lambda w: config["datasets"][w.dataset]["shard_size"],
    log:
        "logs/{dataset}/manifest.log",
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/manifest.py"


rule manifests:
    input:
        expand(paths.MANIFEST, dataset=DATASETS),
