"""Building blocks of the report pages: escaping, inlined images, tables, the page frame."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
from PIL import Image

# C0/C1 control characters are invalid in XML (SVG) and invisible in HTML; captions of
# untrained models are full of them, so they are shown as Unicode control pictures.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with control characters replaced by visible symbols (U+2400 block, or U+2421 for DEL)."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be written as UTF-8
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())) if ord(m.group()) < 0x20 else "\u2421", text)


def esc(value) -> str:
    """Text for HTML or SVG: control characters made visible, markup escaped."""
    return html.escape(visible(str(value)), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def flatten_on(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """RGB image; transparent pixels (views rendered with ``background: transparent``) on ``background``."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def thumbnail(png: bytes, size: int, quality: int = 82) -> str:
    """A view as a JPEG data URI at most ``size`` pixels on its longer side."""
    image = flatten_on(Image.open(io.BytesIO(png)))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return array_thumbnail(np.asarray(image), quality)


def array_thumbnail(pixels: np.ndarray, quality: int = 82) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, optimize=True)
    return data_uri(buffer.getvalue(), "image/jpeg")


def stat_boxes(pairs) -> str:
    """Headline figures, (label, value) pairs, as the pages' stat boxes."""
    return "".join(f'<div class="stat"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in pairs)


def img(src: str, alt: str, size: int) -> str:
    return f'<img src="{src}" alt="{esc(alt)}" width="{size}" style="height:auto">'


def table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(), cls: str = "") -> str:
    """An HTML table; cells are escaped unless they are ``Raw``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell_html(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Raw(str):
    """Markup that a table cell takes as it is."""


def cell_html(cell) -> str:
    if isinstance(cell, Raw):
        return str(cell)
    if isinstance(cell, float):
        return esc(f"{cell:.4g}")
    return esc("" if cell is None else cell)


def score_text(score: float | None) -> str:
    return "no kept caption" if score is None else f"CLIP {score:.3f}"


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 20px;color:#1d2330;
background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #d8dde6}
p.lead{color:#4a5468;margin:0 0 12px;max-width:70em}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #d8dde6;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sheet td{padding:3px;width:1px}.sheet th.obj{min-width:11em;max-width:16em;word-break:break-all;background:#f6f7fa}
figure{margin:0;display:inline-block;vertical-align:top}figcaption{font-size:11px;line-height:1.3;
word-break:break-all;color:#2b3245}.score{font-weight:600;color:#0b5cad}.muted{color:#7a8396}
.caption{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
.row{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start;margin-bottom:10px}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(26em,1fr));gap:18px}
.card{border:1px solid #d8dde6;border-radius:6px;padding:6px;background:#fafbfd}
pre{white-space:pre-wrap;word-break:break-all;font-size:11px;margin:0;max-width:60em}
.stat{display:inline-block;margin:0 18px 8px 0}.stat b{font-size:18px;display:block}
.cm td{min-width:2.2em;text-align:center}
.note{background:#fff6dd;border:1px solid #f0d58c;padding:6px 10px;border-radius:4px;max-width:60em}
"""


def page(title: str, lead: str, body: str) -> str:
    """A whole HTML document, styles inline: it needs nothing from the network."""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f'<body><h1>{esc(title)}</h1><p class="lead">{lead}</p>\n{body}\n</body></html>\n'
    )
