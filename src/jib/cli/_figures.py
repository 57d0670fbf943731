"""Numbers as the command line shows them: percentiles, latencies, costs, identifiers that wrap."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["format_cost", "format_ms", "percentile", "shorten_identifier", "wrap_identifier"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0–100) of `values`, linearly interpolated; `None` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def format_ms(milliseconds: float | None) -> str:
    """`0.42ms`, `3.1ms`, `340ms`, `1.2s`, `95s`; `–` when unknown."""
    if milliseconds is None:
        return "–"
    if milliseconds == 0:
        return "0ms"
    if milliseconds < 1:
        return f"{milliseconds:.2f}ms"
    if milliseconds < 10:
        return f"{milliseconds:.1f}ms"
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    seconds = milliseconds / 1000
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


def format_cost(usd: float | None) -> str:
    """`$0.0123`, `$1.23`, `$1,234`; `–` when unknown. Small amounts keep 3 significant digits."""
    if usd is None:
        return "–"
    if usd == 0:
        return "$0"
    if usd >= 100:
        return f"${usd:,.0f}"
    if usd >= 1:
        return f"${usd:.2f}"
    if usd < 0.000_001:
        return "<$0.000001"
    digits = max(2, 2 - math.floor(math.log10(usd)))
    return f"${usd:.{min(digits, 6)}f}"


def wrap_identifier(identifier: str, width: int) -> str:
    """`identifier` broken into lines at its commas so none is longer than `width`.

    A terminal table would otherwise wrap it mid-word; a part longer than `width` by itself
    stays whole on its own line.
    """
    if len(identifier) <= width:
        return identifier
    parts = identifier.split(",")
    tokens = [part + "," for part in parts[:-1]] + [parts[-1]]
    lines = [tokens[0]]
    for token in tokens[1:]:
        if len(lines[-1]) + len(token) <= width:
            lines[-1] += token
        else:
            lines.append(token)
    return "\n".join(lines)


def shorten_identifier(identifier: str, value_width: int = 32) -> str:
    """`identifier` with every value longer than `value_width` cut with `…`, for a column
    header: tools or a schema, encoded into the identifier, run to kilobytes.

    >>> shorten_identifier("echo!demo,tools=W3siZnVuY3Rpb24iOnsi,seed=1", 8)
    'echo!demo,tools=W3siZnV…,seed=1'
    """
    parts = []
    for part in identifier.split(","):
        key, equals, value = part.partition("=")
        if equals and len(value) > value_width:
            part = f"{key}={value[: value_width - 1]}…"
        parts.append(part)
    return ",".join(parts)
