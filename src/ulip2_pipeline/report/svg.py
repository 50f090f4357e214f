"""Hand-written SVG charts (histograms, line charts): no plotting library, nothing to load."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ulip2_pipeline.report.html import esc

PALETTE = ("#0b5cad", "#e07b00", "#2a9d3a", "#c0392b", "#7b4bb7", "#5d6d7e")
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


@dataclass(frozen=True)
class Frame:
    """The plot area inside an SVG of ``width`` x ``height`` and the data ranges it maps."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 62
    right: int = 12
    top: int = 26
    bottom: int = 40

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (self.height - self.top - self.bottom)


def _axes(frame: Frame, title: str, xlabel: str, ylabel: str, xticks: list[float], yticks: list[float]) -> list[str]:
    out = [f'<text x="{frame.width / 2:.0f}" y="15" text-anchor="middle" font-weight="600">{esc(title)}</text>']
    base = frame.height - frame.bottom
    out.append(f'<line x1="{frame.left}" y1="{base}" x2="{frame.width - frame.right}" y2="{base}" stroke="#555"/>')
    out.append(f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{base}" stroke="#555"/>')
    for t in xticks:
        x = frame.x(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#555"/>'
            f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{tick_label(t)}</text>'
        )
    for t in yticks:
        y = frame.y(t)
        out.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}" y2="{y:.1f}" '
            f'stroke="#e3e6ec"/><text x="{frame.left - 5}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick_label(t)}</text>"
        )
    out.append(
        f'<text x="{(frame.left + frame.width - frame.right) / 2:.0f}" y="{frame.height - 6}" '
        f'text-anchor="middle">{esc(xlabel)}</text>'
    )
    out.append(
        f'<text transform="translate(13 {(frame.top + base) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{esc(ylabel)}</text>'
    )
    return out


def _legend(frame: Frame, names: list[str]) -> list[str]:
    out, x = [], frame.width - frame.right - 6
    for i, name in reversed(list(enumerate(names))):
        width = 14 + 6.2 * len(name)
        x -= width
        out.append(
            f'<rect x="{x:.0f}" y="{frame.top - 2}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 13:.0f}" y="{frame.top + 7}">{esc(name)}</text>'
        )
        x -= 8
    return out


def _svg(width: int, height: int, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>' + "".join(parts) + "</svg>"
    )


def histogram(
    edges: list[float],
    series: dict[str, list[float]],
    title: str,
    xlabel: str,
    ylabel: str = "count",
    width: int = 520,
    height: int = 260,
) -> str:
    """Bars over ``edges`` (len = bins + 1); several series overlap, each drawn semi-transparent."""
    top = max((max(values) for values in series.values() if len(values)), default=0) or 1
    frame = Frame(width, height, edges[0], edges[-1], 0, top * 1.08)
    parts = _axes(frame, title, xlabel, ylabel, nice_ticks(edges[0], edges[-1], 6), nice_ticks(0, top, 4))
    for i, (name, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        for left, right, value in zip(edges[:-1], edges[1:], values):
            if value <= 0:
                continue
            x, y = frame.x(left), frame.y(value)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(frame.x(right) - x - 0.6, 0.6):.1f}" '
                f'height="{frame.y(0) - y:.1f}" fill="{colour}" fill-opacity="0.7">'
                f"<title>{esc(name)} [{left:.4g}, {right:.4g}): {tick_label(value)}</title></rect>"
            )
    if len(series) > 1:
        parts += _legend(frame, list(series))
    return _svg(width, height, parts)


def line_chart(
    xs: list[float],
    series: dict[str, list[float | None]],
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 520,
    height: int = 260,
) -> str:
    """One polyline per series; ``None`` values are gaps."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    x_low, x_high = (min(xs), max(xs)) if xs else (0, 1)
    frame = Frame(width, height, x_low, x_high if x_high > x_low else x_low + 1, low - pad, high + pad)
    parts = _axes(frame, title, xlabel, ylabel, nice_ticks(frame.x0, frame.x1, 6), nice_ticks(low, high, 4))
    for i, (name, ys) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        runs, current = [], []
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y):
                runs, current = runs + [current] if current else runs, []
                continue
            current.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
        runs = runs + [current] if current else runs
        for run in runs:
            parts.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.6">'
                f"<title>{esc(name)}</title></polyline>"
            )
    if len(series) > 1:
        parts += _legend(frame, list(series))
    return _svg(width, height, parts)
