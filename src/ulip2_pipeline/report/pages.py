"""The dataset pages: contact sheet, caption extremes, histograms, point-cloud previews."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.records import Row
from ulip2_pipeline.report import svg
from ulip2_pipeline.report.collect import DatasetDigest, KeptCaption, collect, read_objects
from ulip2_pipeline.report.html import array_thumbnail, esc, img, page, score_text, stat_boxes, thumbnail
from ulip2_pipeline.report.splat import splat
from ulip2_pipeline.settings import ReportSettings


def _caption_html(record: KeptCaption | None) -> str:
    if record is None:
        return '<span class="muted">not ranked</span>'
    if not record.kept:
        return '<span class="muted">no kept caption (all empty)</span>'
    captions = "<br>".join(f'<span class="caption">{esc(c)}</span>' for c in record.kept)
    return f'<span class="score">{esc(score_text(record.score))}</span><br>{captions}'


def _views_of(row: Row) -> list[tuple[int, bytes, float]]:
    """(view, png, azimuth) of an object's views, in view order."""
    return [
        (int(v), image["bytes"], float(az)) for v, image, az in zip(row["views"], row["images"], row["azimuth_deg"])
    ]


def contact_sheet(dataset: str, digest: DatasetDigest, rows: dict[str, dict], settings: ReportSettings) -> str:
    size = settings.thumbnail_px
    sample = [(uid, rows[uid]) for uid, _ in digest.sample if uid in rows]
    columns = sorted({v for _, row in sample for v, _, _ in _views_of(row)})
    azimuth = {v: az for _, row in sample for v, _, az in _views_of(row)}
    header = "".join(f"<th>view {v}<br><span class=muted>{azimuth[v]:.0f}°</span></th>" for v in columns)
    body = []
    for uid, row in sample:
        kept = digest.sample_views.get(uid, {})
        cells = {v: (png, az) for v, png, az in _views_of(row)}
        tds = []
        for v in columns:
            if v not in cells:
                tds.append('<td class="muted">no view</td>')
                continue
            figure = (
                f'<figure style="width:{size}px">{img(thumbnail(cells[v][0], size), f"{uid} view {v}", size)}'
                f"<figcaption>{_caption_html(kept.get(v))}</figcaption></figure>"
            )
            tds.append(f"<td>{figure}</td>")
        label = (
            f'<th class="obj">{esc(uid)}<br><span class="muted">{esc(row.get("category") or "no category")}'
            f" · {len(cells)} views</span></th>"
        )
        body.append(f"<tr>{label}{''.join(tds)}</tr>")
    lead = (
        f"{len(sample)} of {digest.objects} objects (a fixed sample: the uids that hash lowest), every view "
        "with its kept caption and that caption's CLIP score."
    )
    sheet = (
        f'<div style="overflow-x:auto"><table class="sheet"><thead><tr><th>object</th>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    if not sample:
        sheet = '<p class="note">This dataset has no triplets yet: nothing to show.</p>'
    return page(f"{dataset}: contact sheet", esc(lead), sheet)


def _extreme_cards(records: list[KeptCaption], images: dict[tuple[str, int], bytes], size: int) -> str:
    cards = []
    for record in records:
        png = images[(record.uid, record.view)]
        others = "".join(
            f"<tr><td class=num>{score:.3f}</td><td class=caption>{esc(text) or '<i>empty</i>'}</td></tr>"
            for text, score in sorted(record.candidates, key=lambda c: -c[1])
        )
        cards.append(
            f'<div class="card row">{img(thumbnail(png, size), f"{record.uid} view {record.view}", size)}'
            f'<div style="flex:1;min-width:12em"><b>{esc(record.uid)}</b> · view {record.view}<br>'
            f"{_caption_html(record)}<details><summary>all {len(record.candidates)} captions of this view"
            f"</summary><table>{others}</table></details></div></div>"
        )
    return "".join(cards) or '<p class="muted">no kept captions</p>'


def caption_extremes(
    dataset: str,
    digest: DatasetDigest,
    lowest: list[KeptCaption],
    highest: list[KeptCaption],
    images: dict[tuple[str, int], bytes],
    settings: ReportSettings,
) -> str:
    size = settings.thumbnail_px
    body = (
        '<div class="columns">'
        f"<div><h2>Lowest-scored kept captions</h2>{_extreme_cards(lowest, images, size)}</div>"
        f"<div><h2>Highest-scored kept captions</h2>{_extreme_cards(highest, images, size)}</div></div>"
    )
    lead = (
        f"The {settings.extremes} views whose kept caption CLIP scored lowest and the {settings.extremes} "
        f"it scored highest, out of {digest.views} ranked views. Low scores point at views the captioner "
        "could not describe (or the ranker could not match); open a view's other captions to judge the ranking."
    )
    return page(f"{dataset}: lowest and highest scored captions", esc(lead), body)


def histograms(dataset: str, digest: DatasetDigest) -> str:
    edges, counts = digest.score_histogram()
    scores = svg.histogram(edges, counts, "CLIP score of every caption and of the kept ones", "cosine similarity")
    longest = max(digest.caption_words, default=0)
    words = svg.histogram(
        [w - 0.5 for w in range(longest + 2)],
        {"captions": [digest.caption_words.get(w, 0) for w in range(longest + 1)]},
        "Caption length (non-empty captions)",
        "words",
    )
    most = max(digest.empty_per_view, default=0)
    empties = svg.histogram(
        [e - 0.5 for e in range(most + 2)],
        {"views": [digest.empty_per_view.get(e, 0) for e in range(most + 1)]},
        "Empty captions per view",
        "empty captions of the view",
        "views",
    )
    share = digest.empty_captions / digest.captions if digest.captions else 0.0
    mean = digest.mean_kept_score
    stats = [
        ("objects", digest.objects),
        ("ranked views", digest.views),
        ("captions", digest.captions),
        ("empty captions", f"{digest.empty_captions} ({100 * share:.1f} %)"),
        ("views with no kept caption", digest.views_without_kept),
        ("mean kept score", "–" if mean is None else f"{mean:.3f}"),
    ]
    head = stat_boxes(stats)
    body = f"<div>{head}</div><div class='row'>{scores}{words}{empties}</div>"
    lead = (
        "Over every ranked view of the dataset. A kept-score distribution far right of all captions' means "
        "the ranking has something to choose from; many empty captions mean the captioner stalled."
    )
    return page(f"{dataset}: caption statistics", esc(lead), body)


def _spread(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``available`` items, starting at 0."""
    if available <= count:
        return list(range(available))
    return sorted({int(i) for i in np.linspace(0, available, count, endpoint=False)})


def point_previews(dataset: str, uids: list[str], rows: dict[str, dict], settings: ReportSettings) -> str:
    size = settings.thumbnail_px
    cards = []
    for uid in uids:
        row = rows[uid]
        chosen = _spread(settings.point_views, len(row["views"]))
        heads, views, clouds = [], [], []
        for i in chosen:
            png = row["images"][i]["bytes"]
            width, height = _png_size(png)
            cloud = splat(row["xyz"], row["rgb"], row["world_to_camera"][i], row["intrinsics"][i], width, height, size)
            view, azimuth = row["views"][i], row["azimuth_deg"][i]
            heads.append(f"<th>view {view} · {azimuth:.0f}°</th>")
            views.append(f"<td>{img(thumbnail(png, size), f'{uid} view {view}', size)}</td>")
            clouds.append(f"<td>{img(array_thumbnail(cloud), f'{uid} points, camera of view {view}', size)}</td>")
        cards.append(
            f'<div class="card"><b>{esc(uid)}</b> <span class="muted">{esc(row.get("category") or "")} · '
            f"up axis {esc(row.get('up_axis') or '?')} · {len(row['xyz'])} points</span>"
            f'<table class="sheet"><tr><th></th>{"".join(heads)}</tr><tr><th>rendered view</th>{"".join(views)}</tr>'
            f"<tr><th>points, same camera</th>{''.join(clouds)}</tr></table></div>"
        )
    lead = (
        f"{len(uids)} sampled objects: each point cloud (all stored points, coloured, nearest point in front) "
        "drawn through the recorded camera of a rendered view, beside that view. Points and views share one "
        "normalised frame, so the two should match in outline, pose and colour."
    )
    return page(
        f"{dataset}: point clouds beside their views",
        esc(lead),
        "".join(cards) or '<p class="note">No objects to show.</p>',
    )


def _png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:  # reads the header only
        return image.size


ROW_COLUMNS = ["uid", "category", "images", "views", "azimuth_deg"]
POINT_ROW_COLUMNS = ["xyz", "rgb", "intrinsics", "world_to_camera", "up_axis"]


def build_dataset_pages(
    triplet_paths: list, ranked_paths: list, dataset: str, settings: ReportSettings
) -> dict[str, str]:
    """The four dataset pages as HTML text, keyed sheet / captions / histograms / points."""
    digest = collect(triplet_paths, ranked_paths, settings.sample_objects, settings.extremes)
    sample = digest.sample
    point_uids = [uid for uid, _ in sample[: settings.point_objects]]
    wanted: dict[str, set[str]] = {}
    for uid, shard in sample:
        wanted.setdefault(shard, set()).add(uid)
    for record in digest.lowest + digest.highest:
        wanted.setdefault(record.shard, set()).add(record.uid)
    columns = ROW_COLUMNS + (POINT_ROW_COLUMNS if point_uids else [])
    rows = read_objects(triplet_paths, wanted, columns)
    images = {
        (uid, int(v)): image["bytes"] for uid, row in rows.items() for v, image in zip(row["views"], row["images"])
    }

    def shown(records: list[KeptCaption]) -> list[KeptCaption]:
        return [r for r in records if (r.uid, r.view) in images][: settings.extremes]

    return {
        "sheet": contact_sheet(dataset, digest, rows, settings),
        "captions": caption_extremes(dataset, digest, shown(digest.lowest), shown(digest.highest), images, settings),
        "histograms": histograms(dataset, digest),
        "points": point_previews(dataset, [u for u in point_uids if u in rows], rows, settings),
    }


def write_dataset_pages(
    triplet_paths: list, ranked_paths: list, dataset: str, settings: ReportSettings, outputs: dict[str, str]
) -> None:
    for name, text in build_dataset_pages(triplet_paths, ranked_paths, dataset, settings).items():
        write_bytes(text.encode("utf-8"), outputs[name])
