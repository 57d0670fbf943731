"""Reading JSON that comes from data or off the wire (identifiers, specs, answers, prompt files),
bounded: the one loader jib uses for JSON it did not write itself.

Python's `json` module recurses once per level of nesting, so `'[' * 100000` raises a bare
`RecursionError` — and data nested a few hundred levels deep parses, only to blow the stack of
whatever walks it next. Every JSON text jib reads from data goes through `loads` (or
`check_depth`), which refuses arrays and objects nested deeper than `MAX_DEPTH` with the
caller's own error type, before parsing: the check is a count of brackets, done in C for
any text with fewer than `MAX_DEPTH` of them. YAML flow collections use the same brackets, so
spec loading runs the same check on YAML text first (PyYAML's scanner slows down sharply on
long runs of open brackets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from jib.errors import ProcessingError

__all__ = ["MAX_DEPTH", "check_depth", "loads", "nesting_depth"]

MAX_DEPTH = 100
"""The deepest nesting of JSON arrays and objects jib reads from data."""

# A JSON string, escapes included (unrolled so a long string is matched without backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deeply `text` nests JSON arrays and objects (brackets inside strings not counted)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(
    text: str | bytes,
    *,
    what: str,
    error: Callable[[str], Exception] = ProcessingError,
    limit: int = MAX_DEPTH,
) -> None:
    """Refuse JSON `text` that nests arrays and objects deeper than `limit`.

    Raises:
        error: (`ProcessingError` unless given) the text is nested too deeply; the message
            names `what` (e.g. `"the response body"`) and the limit.
    """
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return
        text = text.decode("utf-8", "replace")
    elif text.count("[") + text.count("{") <= limit:
        return
    depth = nesting_depth(text)
    if depth > limit:
        raise error(
            f"{what} is nested {depth} levels deep; at most {limit} levels of arrays and objects "
            "are read"
        )


def loads(
    text: str | bytes,
    *,
    what: str,
    error: Callable[[str], Exception] = ProcessingError,
    limit: int = MAX_DEPTH,
) -> Any:
    """Parse JSON `text` (or UTF-8 bytes) read from data or off the wire, refusing nesting deeper
    than `limit` (see `check_depth`).

    Raises:
        error: the text is nested too deeply (`ProcessingError` unless given).
        json.JSONDecodeError: the text is not JSON (a `ValueError`, as from `json.loads`).
    """
    check_depth(text, what=what, error=error, limit=limit)
    return json.loads(text)
