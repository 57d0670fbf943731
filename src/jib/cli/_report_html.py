"""The page `jib report` writes: one self-contained HTML file that opens offline.

Inline CSS, inline SVG charts (`jib.cli._charts`), no script and nothing fetched: a
Content-Security-Policy forbids loading anything but `data:` images. Model text and dataset
values are untrusted, so every one of them is HTML-escaped and shown as text — tool calls and
structured outputs included. A prompt's images are shown inline when they are `data:` URLs of
PNG, JPEG, GIF or WebP with nothing but base64 after the type (at most `IMAGE_BUDGET` bytes of
them per page; past that, and for every other part, a label such as `[image/png 12 KB]`); an
image URL is never loaded, only named.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any

from jib.cli._charts import colour, cost_chart, latency_chart, success_chart
from jib.cli._comparison import Answer, ComparedPrompt, Comparison
from jib.cli._figures import format_cost, format_ms, shorten_identifier
from jib.cli._message_view import call_line, inline_image, part_label

__all__ = ["render_report"]

_STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  margin: 0 auto; padding: 24px 32px 64px; max-width: 1400px; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 code { font-size: inherit; }
h2 { font-size: 17px; margin: 32px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
.meta { color: #666; margin: 0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #e2e2e2; padding: 6px 9px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; vertical-align: baseline; }
.charts { display: flex; flex-wrap: wrap; gap: 20px; }
figure { flex: 1 1 520px; max-width: 640px; margin: 0; background: #fff;
  border: 1px solid #e2e2e2; border-radius: 6px; padding: 12px 14px; }
figcaption { font-weight: 600; margin-bottom: 8px; }
figure svg { display: block; width: 100%; height: auto; }
table.answers { width: 100%; table-layout: fixed; }
table.answers td, table.answers th { overflow-wrap: anywhere; }
.text { white-space: pre-wrap; max-height: 18em; overflow: auto; }
.failed { color: #b3261e; background: #fdf0ef; }
.missing { color: #999; }
.expected { color: #1d5b79; }
.pid { white-space: nowrap; }
.scroll { overflow-x: auto; }
.small { color: #777; font-size: 12px; }
dl.md { margin: 6px 0 0; font-size: 12px; color: #555; }
dl.md dt { display: inline; font-weight: 600; }
dl.md dd { display: inline; margin: 0 8px 0 4px; }
img.part { display: block; max-width: 100%; max-height: 16em; margin: 4px 0;
  border: 1px solid #e2e2e2; }
.part { color: #555; }
.call { white-space: pre-wrap; color: #5b3d99; margin-top: 4px; }
.output pre { white-space: pre-wrap; margin: 2px 0; max-height: 18em; overflow: auto; }
.invalid { color: #b3261e; margin-top: 4px; }
"""

IMAGE_BUDGET = 32 * 2**20
"""The most bytes of inline images (as data URLs) one report holds; past it, labels."""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return escape(text)


def _identifier(generator: str) -> str:
    """An escaped identifier that a narrow column breaks after its commas, not mid-word (long
    values, such as encoded tools, cut short)."""
    return ",<wbr>".join(escape(part) for part in shorten_identifier(generator).split(","))


def _summary(comparison: Comparison) -> str:
    rows = []
    for index, generator in enumerate(comparison.generators):
        item = comparison.figures[generator]
        cost = format_cost(item.cost) if item.priced else "–"
        rows.append(
            "<tr>"
            f'<td><span class="swatch" style="background:{colour(index)}"></span>'
            f"<code>{_identifier(generator)}</code></td>"
            f'<td class="num">{item.chats}</td><td class="num">{item.ok}</td>'
            f'<td class="num">{item.failed}</td><td class="num">{item.success_rate:.1%}</td>'
            f'<td class="num">{format_ms(item.latency(50))}</td>'
            f'<td class="num">{format_ms(item.latency(95))}</td>'
            f'<td class="num">{item.input_tokens:,} / {item.output_tokens:,}</td>'
            f'<td class="num">{escape(cost)}</td>'
            "</tr>"
        )
    return (
        '<table class="summary"><thead><tr><th>generator</th><th class="num">chats</th>'
        '<th class="num">ok</th><th class="num">failed</th><th class="num">success</th>'
        '<th class="num">p50 latency</th><th class="num">p95 latency</th>'
        '<th class="num">tokens in / out</th><th class="num">cost</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _charts(comparison: Comparison) -> str:
    figures = [comparison.figures[g] for g in comparison.generators]
    cost = (
        cost_chart(figures)
        if any(f.priced for f in figures)
        else '<p class="small">No chat of this run has a known cost. Set prices with '
        "<code>jib run … --price MODEL=IN,OUT</code> or a <code>$JIB_PRICES</code> file; "
        "LiteLLM models are priced from LiteLLM's own price map.</p>"
    )
    latency = (
        latency_chart(figures)
        if any(f.latencies for f in figures)
        else '<p class="small">No chat of this run succeeded, so there is no latency to show.</p>'
    )
    charts = (
        ("Success rate", success_chart(figures)),
        ("Latency of successful chats", latency),
        ("Cost", cost),
    )
    return "".join(
        f"<figure><figcaption>{title}</figcaption>{svg}</figure>" for title, svg in charts
    )


class _Images:
    """What is left of the page's budget for inline images."""

    def __init__(self, budget: int) -> None:
        self.left = budget

    def take(self, size: int) -> bool:
        """Whether an image of `size` bytes still fits (and count it if so)."""
        if size > self.left:
            return False
        self.left -= size
        return True


def _parts(parts: list[Any], images: _Images) -> str:
    """A message's parts: text escaped, images inline while the budget lasts, others labelled."""
    pieces = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text":
            pieces.append(f'<div class="text">{_text(str(part.get("text", "")))}</div>')
            continue
        label = part_label(part)
        image = inline_image(part)
        if image is not None and images.take(len(image[1])):
            pieces.append(
                f'<img class="part" src="{escape(image[1])}" alt="{escape(label)}" '
                f'title="{escape(label)}">'
            )
        else:
            note = " (not shown: the page holds its budget of images)" if image else ""
            pieces.append(f'<div class="part small">{escape(label + note)}</div>')
    return "".join(pieces)


def _answer_cell(answer: Answer | None) -> str:
    if answer is None:
        return '<td class="missing">–</td>'
    if answer.failed:
        return f'<td class="failed"><div class="text">{_text(answer.error or "failed")}</div></td>'
    details = [format_ms(answer.latency_ms)] if answer.latency_ms is not None else []
    if answer.cost_usd is not None:
        details.append(format_cost(answer.cost_usd))
    small = f'<div class="small">{escape(" · ".join(details))}</div>' if details else ""
    if answer.output is not None:
        shown = json.dumps(answer.output, ensure_ascii=False, indent=2)
        body = (
            f'<div class="output"><span class="small">output</span><pre>{_text(shown)}</pre></div>'
        )
    else:
        body = f'<div class="text">{_text(answer.text)}</div>' if answer.text else ""
    if answer.schema_error:
        body += f'<div class="invalid">not valid: {_text(answer.schema_error)}</div>'
    body += "".join(
        f'<div class="call mono">{_text(call_line(name, arguments))}</div>'
        for name, arguments in answer.tool_calls
    )
    return f"<td>{body}{small}</td>"


def _prompt_cell(prompt: ComparedPrompt, images: _Images) -> str:
    extra = {k: v for k, v in prompt.metadata.items() if k != "expected"}
    listed = "".join(f"<dt>{_text(k)}</dt><dd>{_text(v)}</dd>" for k, v in extra.items())
    metadata = f'<dl class="md">{listed}</dl>' if listed else ""
    if prompt.parts:
        return f"<td>{_parts(prompt.parts, images)}{metadata}</td>"
    return f'<td><div class="text">{_text(prompt.prompt)}</div>{metadata}</td>'


def _answers(comparison: Comparison, images: _Images) -> str:
    expected = any("expected" in p.metadata for p in comparison.prompts)
    head = ['<th style="width:7em">id</th>', "<th>prompt</th>"]
    if expected:
        head.append('<th style="width:12%">expected</th>')
    head += [
        f'<th><span class="swatch" style="background:{colour(i)}"></span>'
        f"<code>{_identifier(g)}</code></th>"
        for i, g in enumerate(comparison.generators)
    ]
    rows = []
    samples = comparison.samples
    for prompt in comparison.prompts:
        label = prompt.prompt_id or "–"
        if samples:
            label += f" #{prompt.sample_index}"
        cells = [f'<td class="pid mono">{escape(label)}</td>', _prompt_cell(prompt, images)]
        if expected:
            value = prompt.metadata.get("expected", "")
            cells.append(f'<td class="expected"><div class="text">{_text(value)}</div></td>')
        cells += [_answer_cell(prompt.answers.get(g)) for g in comparison.generators]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="answers"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(
    comparison: Comparison, *, now: datetime | None = None, image_budget: int = IMAGE_BUDGET
) -> str:
    """The whole HTML page for `comparison` (at most `image_budget` bytes of inline images)."""
    moment = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    run = escape(comparison.run)
    chats = sum(f.chats for f in comparison.figures.values())
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>jib report: {run}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Run <code>{run}</code></h1>"
        f'<p class="meta">{escape(comparison.describe())} · {chats} chats · written {moment} '
        "by jib</p></header>"
        f'<h2>Summary</h2><div class="scroll">{_summary(comparison)}</div>'
        f'<h2>Charts</h2><div class="charts">{_charts(comparison)}</div>'
        f"<h2>Answers side by side</h2>{_answers(comparison, _Images(image_budget))}"
        "</body></html>\n"
    )
