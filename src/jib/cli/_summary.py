"""The summary table `jib run` prints: one row of figures per generator, fitted to the terminal.

When the identifiers fit beside the figures, each generator is one line. When they do not, each
identifier gets a line of its own above its figures (broken at its commas if it is longer than
the terminal), so identifiers are never cut or wrapped mid-word; on a very narrow terminal the
time and rate columns are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text

from jib.cli._figures import format_cost, format_ms, percentile, wrap_identifier
from jib.cli._progress import GeneratorStats
from jib.cli._terminal import printable

__all__ = ["summary_lines"]

_GAP = "  "
_INDENT = "    "
_OPTIONAL = ("chats/s", "time")
"""Columns left out, in this order, when even the figures alone are too wide."""


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    value: Callable[[GeneratorStats], str]
    style: Callable[[GeneratorStats], str] = lambda _: ""


def _columns(resumed: bool, tools: bool, schema: bool, cache: bool = False) -> list[_Column]:
    columns = [
        _Column("ok", lambda s: str(s.ok)),
        _Column("failed", lambda s: str(s.failed), lambda s: "red" if s.failed else ""),
    ]
    if resumed:
        columns.append(_Column("skipped", lambda s: str(s.skipped)))
    if cache:
        columns.append(_Column("cached", lambda s: str(s.cache_hits)))
    if tools:
        columns.append(_Column("tool calls", lambda s: str(s.called)))
    if schema:
        columns.append(
            _Column("valid", lambda s: str(s.valid), lambda s: "red" if s.valid < s.ok else "")
        )
    columns += [
        _Column("p50", lambda s: format_ms(percentile(s.latencies, 50))),
        _Column("p95", lambda s: format_ms(percentile(s.latencies, 95))),
        _Column("tokens in/out", lambda s: f"{s.input_tokens:,}/{s.output_tokens:,}"),
        _Column("cost", lambda s: format_cost(s.cost) if s.priced else "–"),
        _Column("time", lambda s: f"{s.seconds:.1f}s"),
        _Column("chats/s", lambda s: f"{s.rate:.1f}" if s.rate else "–"),
    ]
    return columns


def _figures(columns: list[_Column], stats: list[GeneratorStats]) -> tuple[Text, list[Text]]:
    widths = [max(len(c.name), *(len(c.value(s)) for s in stats)) for c in columns]
    header = Text(_GAP.join(c.name.rjust(w) for c, w in zip(columns, widths, strict=True)))
    header.stylize("bold")
    rows = []
    for s in stats:
        row = Text()
        for number, (column, width) in enumerate(zip(columns, widths, strict=True)):
            if number:
                row.append(_GAP)
            row.append(column.value(s).rjust(width), style=column.style(s))
        rows.append(row)
    return header, rows


def summary_lines(
    stats: list[GeneratorStats],
    *,
    resumed: bool,
    width: int,
    tools: bool = False,
    schema: bool = False,
    cache: bool = False,
) -> list[Text]:
    """The lines of the summary of `stats`, at most `width` wide where the content allows.

    `tools` adds a column counting the answers that call tools, `schema` one counting those that
    fit the run's JSON Schema.
    """
    columns = _columns(resumed, tools, schema, cache)
    header, rows = _figures(columns, stats)
    labels = [printable(s.label) for s in stats]  # identifiers may come from data (a store)
    label_width = max(len("generator"), *(len(label) for label in labels))
    lines = [Text("Summary", style="bold")]
    if label_width + len(_GAP) + header.cell_len <= width:
        lines.append(Text("generator".ljust(label_width) + _GAP, style="bold") + header)
        for label, row in zip(labels, rows, strict=True):
            lines.append(Text(label.ljust(label_width) + _GAP) + row)
        return lines
    for name in _OPTIONAL:
        if len(_INDENT) + header.cell_len <= width:
            break
        columns = [c for c in columns if c.name != name]
        header, rows = _figures(columns, stats)
    lines += [Text("generator", style="bold"), Text(_INDENT) + header]
    for label, row in zip(labels, rows, strict=True):
        lines += [Text(line) for line in wrap_identifier(label, width).split("\n")]
        lines.append(Text(_INDENT) + row)
    return lines
