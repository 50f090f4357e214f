"""The training page: curves from metrics.json, the zero-shot table, each benchmark's confusion matrix and
the held-out retrieval table."""

from __future__ import annotations

import json
from pathlib import Path

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.records import Document
from ulip2_pipeline.report import svg
from ulip2_pipeline.report.html import Raw, esc, page, stat_boxes, table

CURVES = (
    ("Loss", "loss", ("loss", "loss_text", "loss_image")),
    ("Batch accuracy, point to text and to image", "accuracy", ("acc_text", "acc_image")),
    ("Learning rate", "learning rate", ("lr",)),
    ("Logit scale", "scale", ("logit_scale",)),
)
ZERO_SHOT_COLUMNS = ("top1", "top5", "class_mean", "chance_top1", "samples", "classes")
MAX_MATRIX_CLASSES = 50  # beyond this a matrix is unreadable (and LVIS's 1,156 classes would be 1.3M cells)
MAX_LISTED = 30


def curve_charts(history: list[dict]) -> str:
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    charts = []
    for title, ylabel, keys in CURVES:
        series = {k: [h.get(k) for h in history] for k in keys if any(k in h for h in history)}
        if series:
            charts.append(svg.line_chart(epochs, series, title, "epoch", ylabel))
    return "".join(charts)


def confusion_table(confusion: Document) -> str:
    """Counts, rows the true class and columns the predicted one, shaded by the row's share."""
    classes, matrix = confusion["classes"], confusion["matrix"]
    head = "".join(f"<th>{esc(c)}</th>" for c in classes)
    rows = []
    for i, (name, counts) in enumerate(zip(classes, matrix)):
        total = sum(counts) or 1
        cells = []
        for j, count in enumerate(counts):
            share = count / total
            colour = "#fff" if share > 0.55 else "#1d2330"
            border = "outline:2px solid #2a9d3a;outline-offset:-2px;" if i == j else ""
            cells.append(
                f'<td style="background:rgba(11,92,173,{share:.3f});color:{colour};{border}" '
                f'title="{esc(name)} predicted as {esc(classes[j])}: {count}">{count}</td>'
            )
        rows.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}<td class=num>{sum(counts)}</td></tr>")
    return (
        f'<table class="cm"><thead><tr><th>true \\ predicted</th>{head}<th>total</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def top_confusions(confusion: Document, count: int = MAX_LISTED) -> str:
    """The most frequent (true, predicted) pairs off the diagonal: a matrix too large to read, summarised."""
    classes, matrix = confusion["classes"], confusion["matrix"]
    pairs = sorted(
        ((n, classes[i], classes[j]) for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j and n > 0),
        key=lambda p: (-p[0], p[1], p[2]),
    )[:count]
    return (
        f"<p>{len(classes)} classes: too many for a readable matrix; the {len(pairs)} most frequent "
        "confusions instead.</p>"
        + table(["true class", "predicted as", "samples"], [[t, p, n] for n, t, p in pairs], numeric={2})
    )


def per_class_table(per_class, classes: list[str] | None) -> str:
    """``per_class_top1`` (class -> top-1 %, or a list in class order); the worst classes first when long."""
    if isinstance(per_class, dict):
        items = list(per_class.items())
    else:
        items = list(zip(classes or [str(i) for i in range(len(per_class))], per_class))
    title = ""
    if len(items) > MAX_LISTED:
        items = sorted(items, key=lambda item: (item[1], item[0]))[:MAX_LISTED]
        title = f"<p>The {MAX_LISTED} classes with the lowest top-1:</p>"
    return f"<div>{title}{table(['class', 'top-1 %'], [[n, v] for n, v in items], numeric={1})}</div>"


def zero_shot_section(zero_shot: Document | None) -> str:
    if zero_shot is None:
        return '<p class="note">No zero-shot results for this run.</p>'
    benchmarks = zero_shot.get("benchmarks", {})
    rows = []
    for name, result in benchmarks.items():
        if "error" in result:
            rows.append(
                [
                    name,
                    result.get("format", ""),
                    Raw(f'<span class="muted">{esc(result["error"])}</span>'),
                    *[""] * (len(ZERO_SHOT_COLUMNS) - 1),
                ]
            )
        else:
            rows.append([name, result.get("format", ""), *[result.get(k, "") for k in ZERO_SHOT_COLUMNS]])
    out = [
        f"<p>Text tower: <code>{esc(zero_shot.get('text_tower', '?'))}</code>. Accuracies in %.</p>",
        table(
            ["benchmark", "format", "top-1", "top-5", "class mean", "chance top-1", "samples", "classes"],
            rows,
            numeric={2, 3, 4, 5, 6, 7},
        ),
    ]
    for name, result in benchmarks.items():
        if "error" in result:
            continue
        out.append(f"<h2>{esc(name)}: confusion matrix</h2>")
        confusion = result.get("confusion")
        parts = []
        if not confusion:
            parts.append(
                '<p class="note">Confusion matrix missing: this zero_shot.json has no '
                f'<code>benchmarks["{esc(name)}"]["confusion"]</code> (written by newer versions of the '
                "eval stage). Rerun the eval rule to get it.</p>"
            )
        elif len(confusion["classes"]) > MAX_MATRIX_CLASSES:
            parts.append(top_confusions(confusion))
        else:
            parts.append(confusion_table(confusion))
        if "per_class_top1" in result:
            parts.append(per_class_table(result["per_class_top1"], (confusion or {}).get("classes")))
        out.append(f"<div class='row'>{''.join(parts)}</div>")
    return "".join(out)


RETRIEVAL_SIDES = (("3D → text", "text"), ("3D → image", "image"))
RETRIEVAL_COLUMNS = ("r1", "r5", "r10", "median_rank", "mean_rank", "chance_r1", "samples")


def retrieval_section(zero_shot: Document | None) -> str:
    """``zero_shot["retrieval"]`` (train.retrieval.heldout_retrieval): each held-out cloud ranked against
    every held-out object's caption and image features, or why there is no such table."""
    if zero_shot is None:
        return '<p class="note">No held-out retrieval for this run.</p>'
    retrieval = zero_shot.get("retrieval")
    if retrieval is None:
        return (
            '<p class="note">Held-out retrieval missing: this zero_shot.json has no <code>retrieval</code> '
            "(written by newer versions of the eval stage). Rerun the eval rule to get it.</p>"
        )
    left_out = ""
    if retrieval.get("skipped"):
        reasons = ", ".join(f"{reason}: {n}" for reason, n in (retrieval.get("skipped_reasons") or {}).items())
        left_out = f" {retrieval['skipped']} held-out objects left out" + (f" ({reasons})." if reasons else ".")
    if "error" in retrieval:
        return (
            f'<p class="note">No held-out retrieval: {esc(retrieval["error"])} '
            f"({esc(retrieval.get('objects', 0))} with points and embeddings).{esc(left_out)}</p>"
        )
    rows = [
        [label, *[retrieval.get(side, {}).get(k, "") for k in RETRIEVAL_COLUMNS]] for label, side in RETRIEVAL_SIDES
    ]
    return (
        f"<p>Each of the {esc(retrieval.get('objects', '?'))} held-out objects (never trained on) is a query: its "
        "cloud's feature ranked against one caption feature and one image feature (of one view) of every "
        "held-out object. Recall in %; ranks are 1-based, ties counted against the model."
        f"{esc(left_out)}</p>"
        + table(
            ["direction", "R@1", "R@5", "R@10", "median rank", "mean rank", "chance R@1", "objects"],
            rows,
            numeric={1, 2, 3, 4, 5, 6, 7},
        )
    )


def training_page(dataset: str, run: str, metrics: Document, zero_shot: Document | None) -> str:
    history = metrics.get("history", [])
    last = history[-1] if history else {}
    stats = [
        ("epochs", metrics.get("epochs", len(history))),
        ("steps", metrics.get("steps", "–")),
        ("final loss", last.get("loss", "–")),
        ("trainable parameters", metrics.get("trainable_parameters", "–")),
        ("CLIP towers unchanged", {True: "yes", False: "NO"}.get(metrics.get("towers_unchanged"), "–")),
    ]
    head = stat_boxes(stats)
    encoder = metrics.get("encoder") or {}
    encoder_table = (
        table(["setting", "value"], [[k, v] for k, v in encoder.items()])
        if encoder
        else '<p class="muted">not recorded</p>'
    )
    body = (
        f"<div>{head}</div><h2>Training curves</h2><div class='row'>{curve_charts(history)}</div>"
        f"<h2>Zero-shot classification</h2>{zero_shot_section(zero_shot)}"
        f"<h2>Held-out retrieval</h2>{retrieval_section(zero_shot)}"
        f"<h2>Encoder</h2>{encoder_table}"
    )
    lead = (
        f"Run {esc(run)}: the Point-BERT trained against the frozen CLIP, per epoch (metrics.json), and its "
        "zero-shot and held-out retrieval scores (zero_shot.json)."
    )
    return page(f"{dataset}: training run {run}", lead, body)


def write_training_page(metrics_path, zero_shot_path, dataset: str, run: str, out) -> None:
    metrics = json.loads(Path(metrics_path).read_text())
    zero_shot = json.loads(Path(zero_shot_path).read_text()) if zero_shot_path else None
    write_bytes(training_page(dataset, run, metrics, zero_shot).encode("utf-8"), out)
