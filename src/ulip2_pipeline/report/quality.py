"""The quality page: what each quality flag marks in a dataset, with examples, and its duplicates.

Pass one reads the light columns of every triplet shard (uid, views, flags, view_flags,
visible_fraction, coverage): per flag the objects and views it marks, a fixed-bin histogram
of every view's visible fraction, and per flag the ``settings.extremes`` flagged objects whose
uid hashes lowest (``collect.sample_key``: stable as the dataset grows). The duplicates table
gives the pairs shown the same way. Pass two reads images and captions of only the row groups
holding a chosen object, so the page's size does not depend on the dataset's.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.quality.flags import OBJECT_FLAGS, VIEW_FLAGS
from ulip2_pipeline.report import svg
from ulip2_pipeline.report.collect import read_objects, sample_key, shard_name
from ulip2_pipeline.report.html import Raw, esc, img, page, stat_boxes, table, thumbnail
from ulip2_pipeline.settings import ReportSettings

FLAG_COLUMNS = ("flags", "view_flags")  # a shard without them predates the quality flags
LIGHT_COLUMNS = ("uid", "views", "flags", "view_flags", "visible_fraction")
EXAMPLE_COLUMNS = ("uid", "category", "views", "images", "kept", "visible_fraction", "coverage", "flags")
VISIBLE_BINS = 50  # bins of the visible-fraction histogram over [0, 1]
CHART = (520, 260)  # the histogram's size (svg.histogram's default)


@dataclass(frozen=True, order=True)
class Example:
    """A flagged object: its sample key, and where to find the view shown (``position`` in its row)."""

    key: int
    uid: str
    shard: str = field(compare=False)
    position: int = field(compare=False)  # index of the view shown in the row's per-view lists
    flagged_views: int = field(compare=False)  # views of the object with the flag (0 for an object-only flag)


@dataclass
class QualityDigest:
    per_flag: int  # examples kept per flag
    objects: int = 0  # triplets in shards that have the quality columns
    views: int = 0
    flagged_objects: int = 0  # objects with any flag
    object_counts: Counter = field(default_factory=Counter)  # flag -> objects
    view_counts: Counter = field(default_factory=Counter)  # flag -> views
    visible: np.ndarray = field(default_factory=lambda: np.zeros(VISIBLE_BINS, np.int64))
    unmeasured_views: int = 0  # views without a visible fraction (renders from before the measure)
    old_shards: list = field(default_factory=list)  # shards without the quality columns
    old_objects: int = 0
    examples: dict = field(default_factory=dict)  # flag -> [Example], lowest key first
    located: dict = field(default_factory=dict)  # uid -> shard, for the uids asked for (duplicate pairs)

    def add_shard(self, table: pa.Table, shard: str, wanted: set[str]) -> None:
        self.objects += table.num_rows
        if table.num_rows == 0:
            return
        uids = table.column("uid").combine_chunks()
        if wanted:
            mask = pc.is_in(uids, value_set=pa.array(sorted(wanted), pa.string())).to_numpy(zero_copy_only=False)
            self.located.update({uids[int(i)].as_py(): shard for i in np.flatnonzero(mask)})
        counts = pc.fill_null(pc.list_value_length(table.column("views").combine_chunks()), 0).to_numpy()
        self.views += int(counts.sum())
        if "visible_fraction" in table.column_names:
            values = _floats(table.column("visible_fraction").combine_chunks().flatten())
            measured = values[np.isfinite(values)]
            self.visible += np.histogram(np.clip(measured, 0.0, 1.0), bins=VISIBLE_BINS, range=(0.0, 1.0))[0]
            self.unmeasured_views += int(counts.sum()) - len(measured)
        else:
            self.unmeasured_views += int(counts.sum())

        flags = table.column("flags").combine_chunks()
        self.flagged_objects += int((pc.fill_null(pc.list_value_length(flags), 0).to_numpy() > 0).sum())
        object_rows = _holders(flags.flatten(), pc.list_parent_indices(flags).to_numpy())
        view_flags = table.column("view_flags").combine_chunks()
        per_view = view_flags.flatten()  # one list of flags per view
        view_row = pc.list_parent_indices(view_flags).to_numpy()
        lengths = pc.fill_null(pc.list_value_length(view_flags), 0).to_numpy().astype(np.int64)
        row_start = np.cumsum(lengths) - lengths  # where each row's views start in per_view (as flatten counts)
        flagged_views = _holders(per_view.flatten(), pc.list_parent_indices(per_view).to_numpy())
        for flag, rows in object_rows.items():
            self.object_counts[flag] += len(rows)
        for flag, views in flagged_views.items():
            self.view_counts[flag] += len(views)

        keys: np.ndarray | None = None
        for flag in sorted(set(object_rows) | set(flagged_views)):
            position: dict[int, int] = {int(r): 0 for r in object_rows.get(flag, ())}  # object-only: first view
            shown: dict[int, int] = {}
            views = flagged_views.get(flag, np.zeros(0, np.int64))  # ascending: a row's first flagged view first
            rows, first, number = np.unique(view_row[views], return_index=True, return_counts=True)
            for row, index, count in zip(rows.tolist(), first.tolist(), number.tolist()):
                position[row] = int(views[index] - row_start[row])
                shown[row] = count
            if not position or self.per_flag == 0:
                continue
            if keys is None:
                keys = np.array([sample_key(u) for u in uids.to_pylist()], dtype=np.uint64)
            candidates = np.array(sorted(position), dtype=np.int64)
            lowest = candidates[np.argsort(keys[candidates], kind="stable")[: self.per_flag]]
            offered = [
                Example(int(keys[r]), uids[int(r)].as_py(), shard, position[int(r)], shown.get(int(r), 0))
                for r in lowest
            ]
            self.examples[flag] = sorted(self.examples.get(flag, []) + offered)[: self.per_flag]


def _floats(array: pa.Array) -> np.ndarray:
    """Float values, nulls as NaN."""
    return pc.fill_null(pc.cast(array, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)


def _holders(values: pa.Array, parents: np.ndarray) -> dict[str, np.ndarray]:
    """flag -> the distinct parents (ascending) whose lists hold it."""
    if len(values) == 0:
        return {}
    encoded = pc.dictionary_encode(pc.fill_null(values, ""))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    out = {}
    for code, name in enumerate(encoded.dictionary.to_pylist()):
        if name:
            out[name] = np.unique(parents[codes == code])
    return out


def collect_quality(triplet_paths: list, per_flag: int, wanted: set[str]) -> QualityDigest:
    """Pass one over every triplet shard, in shard order; ``wanted``: uids whose shard to note."""
    digest = QualityDigest(per_flag=per_flag)
    for path in sorted(triplet_paths, key=shard_name):
        shard = shard_name(path)
        names = set(pq.read_schema(path).names)
        if not set(FLAG_COLUMNS) <= names:
            digest.old_shards.append(shard)
            digest.old_objects += pq.ParquetFile(path).metadata.num_rows
            if wanted:
                uids = pq.read_table(path, columns=["uid"]).column("uid").to_pylist()
                digest.located.update({uid: shard for uid in uids if uid in wanted})
            continue
        digest.add_shard(pq.read_table(path, columns=[c for c in LIGHT_COLUMNS if c in names]), shard, wanted)
    return digest


def read_duplicates(path, count: int) -> tuple[int, list[dict]]:
    """The number of duplicates and ``count`` of them (uid, duplicate_of, distance), lowest uid key first."""
    if path is None:
        return 0, []
    rows = pq.read_table(path, columns=["uid", "duplicate_of", "distance"]).to_pylist()
    return len(rows), heapq.nsmallest(count, rows, key=lambda r: (sample_key(r["uid"]), r["uid"]))


# --- the page ---


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def flag_meanings(thresholds: Mapping[str, float] | None) -> dict[str, str]:
    """What each flag means, with the thresholds of the ``quality`` section when known."""
    t = thresholds or {}

    def below(name: str, as_percent: bool = False) -> str:
        if name not in t:
            return f"quality.{name}"
        return _pct(t[name]) if as_percent else f"{t[name]:g}"

    return {
        "tiny_object": f"the median view's silhouette covers less than {below('tiny_coverage', True)} of the image",
        "outlier_geometry": (
            f"a few points (at most {below('outlier_max_fraction', True)}) lie far from and detached from the body "
            f"(over {below('outlier_min_spread')} core radii out)"
        ),
        "missing_texture": "texture files were missing: rendered with the fallback colour (render.missing_texture_rgb)",
        "blank_view": f"a view's visible fraction is below {below('blank_below')}: it shows (almost) nothing",
        "low_contrast": (
            f"a view's visible fraction is below {below('low_contrast_below')}: much of the object hardly differs "
            "from the background"
        ),
        "empty_caption": "a view's kept caption is empty",
        "repetitive_caption": "a view's kept caption repeats itself",
        "degenerate_caption": "a view's kept caption is not readable text",
        "duplicate": "the same shape as an earlier object (duplicates table, quality.duplicate_distance)",
    }


def _flag_order(digest: QualityDigest) -> list[str]:
    found = set(digest.object_counts) | set(digest.view_counts)
    return list(OBJECT_FLAGS) + sorted(found - set(OBJECT_FLAGS))


def _share(count: int, total: int) -> str:
    return _pct(count / total) if total else "–"


def flag_table(digest: QualityDigest, duplicates: int, meanings: dict[str, str]) -> str:
    rows = []
    for flag in _flag_order(digest):
        objects = digest.object_counts.get(flag, 0)
        per_view = flag in VIEW_FLAGS or flag in digest.view_counts
        views = digest.view_counts.get(flag, 0)
        rows.append(
            [
                Raw(f"<b>{esc(flag)}</b>"),
                meanings.get(flag, ""),
                objects,
                _share(objects, digest.objects),
                views if per_view else "–",
                _share(views, digest.views) if per_view else "–",
            ]
        )
    total = digest.objects + digest.old_objects
    rows.append([Raw("<b>duplicate</b>"), meanings["duplicate"], duplicates, _share(duplicates, total), "–", "–"])
    headers = ["flag", "meaning", "objects flagged", "share of triplets", "views flagged", "share of views"]
    return table(headers, rows, numeric={2, 3, 4, 5})


def visible_histogram(digest: QualityDigest, thresholds: Mapping[str, float] | None) -> str:
    edges = np.linspace(0.0, 1.0, VISIBLE_BINS + 1).tolist()
    chart = svg.histogram(
        edges,
        {"views": digest.visible.tolist()},
        "Visible fraction of every view",
        "share of the silhouette that stands out from the background",
        "views",
    )
    marks = [(name, (thresholds or {}).get(name)) for name in ("blank_below", "low_contrast_below")]
    frame = svg.Frame(*CHART, 0.0, 1.0, 0.0, 1.0)
    lines = []
    for i, (name, value) in enumerate(marks):
        if value is None:
            continue
        x = frame.x(float(value))
        lines.append(
            f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{CHART[1] - frame.bottom}" stroke="#c0392b" '
            f'stroke-dasharray="4 3"><title>quality.{name} = {float(value):g}</title></line>'
            f'<text x="{x + 3:.1f}" y="{frame.top + 12 + 12 * i}" fill="#c0392b">{esc(name)} {float(value):g}</text>'
        )
    return chart.replace("</svg>", "".join(lines) + "</svg>") if lines else chart


def _number(values, position: int, fmt) -> str:
    if values is None or position >= len(values) or values[position] is None:
        return "not measured"
    return fmt(values[position])


def _view_image(row: dict, position: int, size: int) -> str:
    images = row.get("images") or []
    image = images[position] if position < len(images) else None
    if not image or not image.get("bytes"):
        return f'<div class="muted" style="width:{size}px">no image</div>'
    view = row["views"][position]
    try:
        return img(thumbnail(image["bytes"], size), f"{row['uid']} view {view}", size)
    except OSError:  # not a readable picture
        return f'<div class="muted" style="width:{size}px">unreadable image</div>'


def _kept_caption(row: dict, position: int) -> str:
    kept = row.get("kept") or []
    captions = kept[position] if position < len(kept) else None
    if not captions:
        return '<span class="muted">no kept caption</span>'
    return f'<span class="caption">{esc(captions[0]) or "<i>empty</i>"}</span>'


def example_card(example: Example, row: dict, size: int) -> str:
    position = example.position
    views = row["views"]
    view = views[position] if position < len(views) else "?"
    which = (
        f"view {view} ({example.flagged_views} of {len(views)} views flagged)"
        if example.flagged_views
        else f"view {view} (first of {len(views)})"
    )
    others = ", ".join(row.get("flags") or []) or "none"
    return (
        f'<div class="card row">{_view_image(row, position, size)}'
        f'<div style="flex:1;min-width:12em"><b>{esc(row["uid"])}</b> '
        f'<span class="muted">{esc(row.get("category") or "")}</span><br>{esc(which)}<br>'
        f"visible fraction {esc(_number(row.get('visible_fraction'), position, lambda v: f'{v:.3f}'))} · "
        f"coverage {esc(_number(row.get('coverage'), position, lambda v: _pct(v)))}<br>"
        f"{_kept_caption(row, position)}<br><span class=muted>flags: {esc(others)}</span></div></div>"
    )


def duplicate_card(pair: dict, rows: dict[str, dict], size: int) -> str:
    figures = []
    for uid, label in ((pair["uid"], "duplicate"), (pair["duplicate_of"], "original")):
        row = rows.get(uid)
        picture = (
            _view_image(row, 0, size)
            if row and row.get("views")
            else f'<div class="muted" style="width:{size}px">not in the triplets</div>'
        )
        figures.append(
            f'<figure style="width:{size}px">{picture}<figcaption>{esc(label)}<br>{esc(uid)}</figcaption></figure>'
        )
    distance = "–" if pair["distance"] is None else f"{pair['distance']:.4f}"
    return f'<div class="card row">{"".join(figures)}<div>fingerprint distance<br><b>{esc(distance)}</b></div></div>'


def quality_page(
    dataset: str,
    digest: QualityDigest,
    duplicates: int,
    pairs: list[dict],
    rows: dict[str, dict],
    settings: ReportSettings,
    thresholds: Mapping[str, float] | None = None,
) -> str:
    size = settings.thumbnail_px
    meanings = flag_meanings(thresholds)
    total = digest.objects + digest.old_objects
    stats = [
        ("triplets", total),
        ("views checked", digest.views),
        ("flagged objects", f"{digest.flagged_objects} ({_share(digest.flagged_objects, digest.objects)})"),
        ("duplicates", duplicates),
    ]
    notes = []
    if digest.old_shards:
        notes.append(
            f'<p class="note">{len(digest.old_shards)} of the triplet shards ({digest.old_objects} objects) predate '
            "the quality flags: they have no flags, so they are left out of the counts below. Rerun the triplets "
            "rule for them (<code>snakemake --forcerun triplets_shard</code>) to flag them.</p>"
        )
    if digest.unmeasured_views:
        notes.append(
            f'<p class="note">{digest.unmeasured_views} views have no visible fraction (rendered before it was '
            "measured): they cannot be blank_view or low_contrast.</p>"
        )
    sections, unflagged = [], []
    for flag in _flag_order(digest):
        examples = [e for e in digest.examples.get(flag, []) if e.uid in rows]
        if not examples:
            unflagged.append(flag)
            continue
        flagged = digest.object_counts.get(flag, 0) or len(examples)
        cards = "".join(example_card(e, rows[e.uid], size) for e in examples)
        sections.append(
            f"<h2>{esc(flag)} <span class=muted>({len(examples)} of {flagged} objects)</span></h2>"
            f'<div class="columns">{cards}</div>'
        )
    if unflagged:
        sections.append(f"<p><b>No examples</b> of {esc(', '.join(unflagged))}: no object has them.</p>")
    dup_cards = "".join(duplicate_card(p, rows, size) for p in pairs)
    dup_section = f"<h2>duplicate <span class=muted>({len(pairs)} of {duplicates} pairs)</span></h2>" + (
        f'<div class="columns">{dup_cards}</div>' if dup_cards else "<p>No object duplicates an earlier one.</p>"
    )
    body = (
        f"<div>{stat_boxes(stats)}</div>{''.join(notes)}<h2>Flags</h2>{flag_table(digest, duplicates, meanings)}"
        f"<div class='row'>{visible_histogram(digest, thresholds)}</div>"
        f"{''.join(sections)}{dup_section}"
    )
    lead = (
        "Flags mark objects and views that may hurt training; they remove nothing by themselves "
        "(quality.drop_objects, drop_views and drop_duplicates leave them out of training and the exports). "
        "An object has every flag one of its views has. Each flag's examples are the flagged objects whose uid "
        "hashes lowest (a stable sample), each shown by its first flagged view (object-only flags: its first "
        "view)."
    )
    return page(f"{dataset}: quality flags", esc(lead), body)


def build_quality_page(
    triplet_paths: list,
    duplicates_path,
    dataset: str,
    settings: ReportSettings,
    thresholds: Mapping[str, float] | None = None,
) -> str:
    """The quality page as HTML text; ``thresholds``: the flag fields of the ``quality`` section, if known."""
    per_flag = settings.extremes
    duplicates, pairs = read_duplicates(duplicates_path, per_flag)
    wanted = {uid for p in pairs for uid in (p["uid"], p["duplicate_of"])}
    digest = collect_quality(triplet_paths, per_flag, wanted)
    by_shard: dict[str, set[str]] = {}
    for examples in digest.examples.values():
        for example in examples:
            by_shard.setdefault(example.shard, set()).add(example.uid)
    for uid, shard in digest.located.items():
        by_shard.setdefault(shard, set()).add(uid)
    paths = {shard_name(p): p for p in triplet_paths}
    rows: dict[str, dict] = {}
    for shard, uids in sorted(by_shard.items()):
        names = set(pq.read_schema(paths[shard]).names)
        rows.update(read_objects([paths[shard]], {shard: uids}, [c for c in EXAMPLE_COLUMNS if c in names]))
    return quality_page(dataset, digest, duplicates, pairs, rows, settings, thresholds)


def write_quality_page(
    triplet_paths: list,
    duplicates_path,
    dataset: str,
    settings: ReportSettings,
    out,
    thresholds: Mapping[str, float] | None = None,
) -> None:
    text = build_quality_page(triplet_paths, duplicates_path, dataset, settings, thresholds)
    write_bytes(text.encode("utf-8"), out)
