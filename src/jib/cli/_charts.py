"""The charts of `jib report`, drawn as inline SVG text: no library, no script, nothing to fetch.

Each chart has one row per generator, labelled above its bar so long identifiers fit (cut with
an ellipsis; the whole identifier is the row's tooltip). Every text that comes from data is
escaped.
"""

from __future__ import annotations

import math
from html import escape

from jib.cli._comparison import GeneratorFigures
from jib.cli._figures import format_cost, format_ms, percentile

__all__ = ["PALETTE", "colour", "cost_chart", "latency_chart", "success_chart"]

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
    "#e15759",
)
"""A colour per generator, in order (repeating after ten)."""

_WIDTH = 560
_LEFT = 8
_RIGHT = 8
_ROW = 46  # label line + bar
_BAR = 18
_CHAR = 6.6  # the average width of a 12px character, to keep labels inside the chart
_OK = "#59a14f"
_FAILED = "#e15759"
_MAX_POINTS = 400


def colour(index: int) -> str:
    """The colour of the generator at `index`."""
    return PALETTE[index % len(PALETTE)]


def _svg(height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _row_label(y: float, text: str, detail: str) -> str:
    """The generator at the left (cut to fit), `detail` at the right, on one line."""
    room = int((_WIDTH - _LEFT - _RIGHT - 16) / _CHAR) - len(detail)
    label = text if len(text) <= room else text[: max(room - 1, 8)] + "…"
    return (
        f'<text x="{_LEFT}" y="{y + 13:.1f}" fill="#222">{escape(label)}</text>'
        f'<text x="{_WIDTH - _RIGHT}" y="{y + 13:.1f}" fill="#666" text-anchor="end">'
        f"{escape(detail)}</text>"
    )


def success_chart(figures: list[GeneratorFigures]) -> str:
    """Stacked bars: the share of each generator's chats that succeeded and failed."""
    inner = _WIDTH - _LEFT - _RIGHT
    body: list[str] = []
    for row, item in enumerate(figures):
        y = row * _ROW + 4
        rate = item.success_rate
        detail = f"{rate:.1%} ok ({item.ok} of {item.chats})"
        body.append(f"<g><title>{escape(item.generator)}: {escape(detail)}</title>")
        body.append(_row_label(y, item.generator, detail))
        ok_width = inner * rate
        top = y + 20
        body.append(
            f'<rect x="{_LEFT}" y="{top}" width="{inner}" height="{_BAR}" fill="#eee" rx="2"/>'
        )
        if item.ok:
            body.append(
                f'<rect x="{_LEFT}" y="{top}" width="{ok_width:.1f}" height="{_BAR}" '
                f'fill="{_OK}" rx="2"/>'
            )
        if item.failed:
            body.append(
                f'<rect x="{_LEFT + ok_width:.1f}" y="{top}" width="{inner - ok_width:.1f}" '
                f'height="{_BAR}" fill="{_FAILED}" rx="2"/>'
            )
        body.append("</g>")
    return _svg(len(figures) * _ROW + 8, body, "Success rate per generator")


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def latency_chart(figures: list[GeneratorFigures]) -> str:
    """Box plots on one axis: whiskers min–max, box p25–p75, a line at the median, and dots."""
    inner = _WIDTH - _LEFT - _RIGHT
    highest = max((max(f.latencies) for f in figures if f.latencies), default=0.0)
    step = _nice_step(highest) if highest > 0 else 1.0
    top = step * math.ceil(highest / step) if highest > 0 else 1.0

    def x(value: float) -> float:
        return _LEFT + inner * value / top

    body: list[str] = []
    for row, item in enumerate(figures):
        y = row * _ROW + 4
        values = sorted(item.latencies)
        if not values:
            body.append(_row_label(y, item.generator, "no successful chat to time"))
            continue
        p25, p50, p75, p95 = (percentile(values, q) or 0.0 for q in (25, 50, 75, 95))
        detail = f"p50 {format_ms(p50)} · p95 {format_ms(p95)} · {len(values)} chats"
        mid = y + 20 + _BAR / 2
        body.append(f"<g><title>{escape(item.generator)}: {escape(detail)}</title>")
        body.append(_row_label(y, item.generator, detail))
        body.append(
            f'<line x1="{x(values[0]):.1f}" x2="{x(values[-1]):.1f}" y1="{mid}" y2="{mid}" '
            'stroke="#888"/>'
        )
        body.append(
            f'<rect x="{x(p25):.1f}" y="{y + 20}" width="{max(x(p75) - x(p25), 1.5):.1f}" '
            f'height="{_BAR}" fill="{colour(row)}" fill-opacity="0.35" stroke="{colour(row)}"/>'
        )
        body.append(
            f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{y + 18}" y2="{y + 22 + _BAR}" '
            f'stroke="{colour(row)}" stroke-width="2.5"/>'
        )
        shown = values if len(values) <= _MAX_POINTS else values[:: len(values) // _MAX_POINTS]
        for number, value in enumerate(shown):
            jitter = ((number * 7919) % 11 - 5) * 1.2  # a fixed spread, so dots do not stack
            body.append(
                f'<circle cx="{x(value):.1f}" cy="{mid + jitter:.1f}" r="1.8" '
                f'fill="{colour(row)}" fill-opacity="0.7"/>'
            )
        body.append("</g>")
    axis_y = len(figures) * _ROW + 10
    body.append(
        f'<line x1="{_LEFT}" x2="{_LEFT + inner}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>'
    )
    tick = 0.0
    while tick <= top + step / 2:
        anchor = "start" if tick == 0 else "end" if tick >= top else "middle"
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{axis_y}" y2="{axis_y + 4}" '
            f'stroke="#999"/><text x="{x(tick):.1f}" y="{axis_y + 16}" fill="#555" '
            f'text-anchor="{anchor}">{escape(format_ms(tick))}</text>'
        )
        tick += step
    return _svg(axis_y + 22, body, "Latency per generator (successful chats)")


def cost_chart(figures: list[GeneratorFigures]) -> str:
    """Bars: what each generator's chats cost, where the price is known."""
    inner = _WIDTH - _LEFT - _RIGHT
    highest = max((f.cost for f in figures if f.priced), default=0.0)
    body: list[str] = []
    for row, item in enumerate(figures):
        y = row * _ROW + 4
        if not item.priced:
            body.append(_row_label(y, item.generator, "no price known"))
            continue
        share = item.cost / highest if highest > 0 else 0.0
        unpriced = item.ok - item.priced
        detail = format_cost(item.cost)
        if unpriced > 0:
            detail += f" ({unpriced} ok chats without a price)"
        body.append(f"<g><title>{escape(item.generator)}: {escape(detail)}</title>")
        body.append(_row_label(y, item.generator, detail))
        body.append(
            f'<rect x="{_LEFT}" y="{y + 20}" width="{max(inner * share, 1.5):.1f}" '
            f'height="{_BAR}" fill="{colour(row)}" rx="2"/>'
        )
        body.append("</g>")
    return _svg(len(figures) * _ROW + 8, body, "Cost per generator (US dollars)")
