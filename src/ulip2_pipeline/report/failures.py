"""The failures page: what came in and out, failures by stage and reason, a few examples of each."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from ulip2_pipeline.accounting import CHAIN
from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.records import Document
from ulip2_pipeline.report.html import Raw, esc, page, stat_boxes, table

STAGE_ORDER = ("manifest", *CHAIN)


def shorten(text: str, head: int = 400, tail: int = 1200) -> str:
    """``text`` with its middle elided: the error comes first, the log tail last."""
    if len(text) <= head + tail + 40:
        return text
    return f"{text[:head]}\n… ({len(text) - head - tail} characters left out) …\n{text[-tail:]}"


def failure_examples(paths: list, per_reason: int) -> dict[tuple[str, str], list[dict]]:
    """Up to ``per_reason`` failure rows per (stage, reason), read file by file."""
    examples: dict[tuple[str, str], list[dict]] = {}
    for path in paths:
        if per_reason == 0:
            break
        for row in pq.read_table(path).to_pylist():
            bucket = examples.setdefault((row["stage"], row["reason"]), [])
            if len(bucket) < per_reason:
                bucket.append(row)
    return examples


def _stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def failures_page(dataset: str, summary: Document, examples: dict[tuple[str, str], list[dict]]) -> str:
    objects_in, out = summary.get("objects_in", 0), summary.get("triplets_out", 0)
    yield_text = f"{100 * out / objects_in:.1f} %" if objects_in else "–"
    stats = [
        ("objects in", objects_in),
        ("triplets out", out),
        ("yield", yield_text),
        ("objects that left", summary.get("objects_failed", 0)),
        ("shards", len(summary.get("shards", []))),
    ]
    head = stat_boxes(stats)
    stages = summary.get("stages", {})
    funnel = (
        table(
            ["stage", "objects in", "out", "left here"],
            [
                [stage, s["in"], s["out"], sum(s["failed"].values())]
                for stage, s in sorted(stages.items(), key=lambda kv: _stage_rank(kv[0]))
            ],
            numeric={1, 2, 3},
        )
        if stages
        else ""
    )
    failures, flags = summary.get("failures", {}), summary.get("flags", {})
    rows = [
        [stage, reason, count]
        for stage in sorted(failures, key=_stage_rank)
        for reason, count in sorted(failures[stage].items())
    ]
    counts = (
        table(["stage it left at", "reason", "objects"], rows, numeric={2})
        if rows
        else "<p>No failures: every object made it through every stage.</p>"
    )
    flag_rows = [
        [stage, reason, count]
        for stage in sorted(flags, key=_stage_rank)
        for reason, count in sorted(flags[stage].items())
    ]
    flagged = table(["stage", "reason", "rows"], flag_rows, numeric={2}) if flag_rows else "<p>None.</p>"
    sections = []
    for stage, reason in sorted(examples, key=lambda k: (_stage_rank(k[0]), k[1])):
        shown = examples[(stage, reason)]
        total = failures.get(stage, {}).get(reason) or flags.get(stage, {}).get(reason) or len(shown)
        sample_rows = [[r["uid"], r["source"], Raw(f"<pre>{esc(shorten(r['detail'] or ''))}</pre>")] for r in shown]
        sections.append(
            f"<h2>{esc(stage)} · {esc(reason)} <span class=muted>({len(shown)} of {total})</span></h2>"
            + table(["uid", "source", "detail"], sample_rows)
        )
    body = (
        f"<div>{head}</div><h2>Objects through the stages</h2>{funnel}"
        f"<h2>Where objects left, and why</h2>{counts}"
        f"<h2>Flags: objects that came out with a note (a fallback colour, a lost view)</h2>{flagged}"
        f"{''.join(sections)}"
    )
    lead = (
        "Objects the pipeline could not process never fail a shard: each leaves at the first stage it did not "
        "come out of, with a reason (from summary.json; in = out + left at every stage). Below, a few examples "
        "of each reason with the error or log tail to act on; the join's rows (triplets) say where an object "
        "left."
    )
    return page(f"{dataset}: failures", esc(lead), body)


def write_failures_page(summary_path, failure_paths: list, dataset: str, per_reason: int, out) -> None:
    summary = json.loads(Path(summary_path).read_text())
    text = failures_page(dataset, summary, failure_examples(failure_paths, per_reason))
    write_bytes(text.encode("utf-8"), out)
