"""Text that can leave memory as UTF-8: lone surrogates written as visible `\\udXXX` escapes.

A lone surrogate (`"\\ud800"`: valid in a JSON string and in a Python `str`, or a byte that was
not UTF-8 in a command-line argument) cannot be encoded as UTF-8, so SQLite and PostgreSQL
refuse any row holding one (a whole batch would fail with it), and JSON writers refuse it too.
Where a record leaves memory (the store, `to_json`) each is written as the six characters
`\\ud800` instead; the record in memory keeps the original.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["escape_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) escaped; `value` itself when
    it holds none (the common case costs one walk, no copies)."""
    return _escaped(value) if _holds_surrogate(value) else value


def _holds_surrogate(value: Any) -> bool:
    # A loop, not recursion: this runs for every stored record, and most text is ASCII.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub(_escape, value)
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(item) for item in value]
    return value


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"
