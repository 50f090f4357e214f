# The visual report: per dataset, self-contained HTML pages (results/{dataset}/report/) that
# `snakemake --report report.html` embeds. They are part of the default target, so after a
# finished run the report needs nothing else.


rule report_dataset:
    input:
        triplets=shards_of_dataset(paths.TRIPLETS),
        ranked=shards_of_dataset(paths.RANKED),
    output:
        sheet=report(
            f"{paths.REPORT}/contact_sheet.html",
            caption="../report/contact_sheet.rst",
            category="{dataset}",
            subcategory="1. Views and captions",
            labels={"page": "contact sheet"},
        ),
        captions=report(
            f"{paths.REPORT}/caption_extremes.html",
            caption="../report/caption_extremes.rst",
            category="{dataset}",
            subcategory="1. Views and captions",
            labels={"page": "lowest and highest scores"},
        ),
        histograms=report(
            f"{paths.REPORT}/caption_statistics.html",
            caption="../report/caption_statistics.rst",
            category="{dataset}",
            subcategory="1. Views and captions",
            labels={"page": "statistics"},
        ),
        points=report(
            f"{paths.REPORT}/point_clouds.html",
            caption="../report/point_clouds.rst",
            category="{dataset}",
            subcategory="2. Point clouds",
            labels={"page": "points beside views"},
        ),
    params:
        report=config["report"],
    log:
        "logs/{dataset}/report/dataset.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/report_dataset.py"


rule report_failures:
    input:
        summary=rules.summary.output[0],
        failures=failure_files,
    output:
        report(
            f"{paths.REPORT}/failures.html",
            caption="../report/failures.rst",
            category="{dataset}",
            subcategory="3. Failures",
            labels={"page": "failures"},
        ),
    params:
        examples=config["report"]["failure_examples"],
    log:
        "logs/{dataset}/report/failures.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/report_failures.py"


rule report_training:
    input:
        metrics=rules.train_run.output.metrics,
        zero_shot=rules.eval_run.output[0],
    output:
        report(
            f"{paths.REPORT}/training_{{run}}.html",
            caption="../report/training.rst",
            category="{dataset}",
            subcategory="4. Training",
            labels={"page": "training run {run}"},
        ),
    log:
        "logs/{dataset}/report/training_{run}.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/report_training.py"


rule report_quality:
    input:
        triplets=shards_of_dataset(paths.TRIPLETS),
        duplicates=paths.DUPLICATES,
    output:
        report(
            f"{paths.REPORT}/quality.html",
            caption="../report/quality.rst",
            category="{dataset}",
            subcategory="5. Quality",
            labels={"page": "quality flags"},
        ),
    params:
        report=config["report"],
        quality=quality_flag_params(),
    log:
        "logs/{dataset}/report/quality.log",
    localrule: True
    conda:
        "../envs/points.yaml"
    script:
        "../workflow_scripts/report_quality.py"


rule report:
    input:
        expand(
            f"{paths.REPORT}/{{page}}.html",
            dataset=DATASETS,
            page=["contact_sheet", "caption_extremes", "caption_statistics", "point_clouds", "failures", "quality"],
        ),
        expand(
            f"{paths.REPORT}/training_{{run}}.html",
            dataset=DATASETS,
            run=config["train"]["run"],
        ),
