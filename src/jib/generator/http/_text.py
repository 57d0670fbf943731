"""Text helpers of the HTTP transforms: shortening for messages, JSON text, size estimates."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["text_size", "to_text", "truncate"]

_SCALAR_SIZE = 32
"""Characters assumed for a float, a bool, None or an object jib does not look into."""


def truncate(text: str, limit: int = 500) -> str:
    """`text` cut to `limit` characters, marking how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def to_text(value: Any) -> str:
    """A transform result as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_size(value: Any, limit: int, tick: Callable[[], None] | None = None) -> int:
    """About how many characters `str(value)` (or its JSON) has, without building it.

    Containers are walked, so a list holding one long string a thousand times counts a thousand
    times; the walk stops as soon as the count passes `limit`. Strings inside containers count
    up to ten characters each when they hold characters `repr` escapes. `tick` is called every
    few thousand values (to check a clock).
    """
    if isinstance(value, str):
        return len(value)
    total = 0
    seen = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        seen += 1
        if tick is not None and not seen % 4096:
            tick()
        if isinstance(item, str):
            total += (len(item) if item.isprintable() else 10 * len(item)) + 4
        elif isinstance(item, (bytes, bytearray)):
            total += 4 * len(item) + 4
        elif isinstance(item, bool) or item is None:
            total += 6
        elif isinstance(item, int):
            # A decimal digit carries log2(10) > 3 bits.
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            namespace = _namespace_attributes(item)
            if namespace is not None:
                total += 14
                stack.append(namespace)
            else:
                total += _SCALAR_SIZE
    return total


def _namespace_attributes(value: Any) -> dict[str, Any] | None:
    """The attributes of a Jinja `namespace()` (its repr shows them all), else `None`."""
    if type(value).__name__ != "Namespace" or type(value).__module__ != "jinja2.utils":
        return None
    attributes = object.__getattribute__(value, "_Namespace__attrs")
    return attributes if isinstance(attributes, dict) else None
