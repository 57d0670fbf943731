"""What a template operation would build, estimated before it runs (for `_sandbox`'s hooks).

Each estimate answers "how many characters or items would this make?" from the arguments alone,
cheaply, erring high: the sandbox charges the answer to the budget and only then lets the
operation run. Operations whose result is never much larger than their input are measured
after they run instead (`built_size`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jib.errors import BudgetExceededError
from jib.generator.http._budget import Budget, about
from jib.generator.http._text import text_size

__all__ = [
    "FILTER_ESTIMATES",
    "MAX_INT_BITS",
    "Sized",
    "as_count",
    "built_size",
    "check_bits",
    "measured",
    "method_size",
    "printf_size",
    "structure",
]

MAX_INT_BITS = 65_536
"""The largest number (in bits) `*` and `**` may make: about 19,700 decimal digits."""

_MAX_ROUND_DIGITS = 1_000
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")

Sized = tuple[int, tuple[Any, ...], dict[str, Any]]
"""`(size, args, kwargs)`: what a call would build, and the arguments to make it with (an
iterable comes back as a list, so it is not consumed twice)."""


def measured(value: Any, budget: Budget) -> int:
    """About how many characters `value` prints as, counting no further than the budget has."""
    limit = budget.limits.max_size - budget.size
    return text_size(value, limit, budget.check_time)


STRING_ITEM_CHARS = 100
"""Characters of a string that count as one item in a structure's size: comparing or hashing
a hundred characters costs about what comparing one item does."""


def structure(value: Any, budget: Budget) -> int:
    """About how many items comparing, hashing, sorting or copying `value` walks, parts reached
    twice counted twice; counting no further than the budget has (see `text_size`)."""
    limit = budget.limits.max_size - budget.size
    return text_size(value, limit, budget.check_time, STRING_ITEM_CHARS)


def as_count(value: Any) -> int:
    """An int argument as a non-negative count; anything else counts 0 (the callee complains)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def check_bits(bits: int, operator: str) -> None:
    """Refuse to make a number of `bits` bits when that is more than `MAX_INT_BITS`."""
    if bits > MAX_INT_BITS:
        raise BudgetExceededError(
            f"'{operator}' would make a number of {about(bits)} bits; the limit is {MAX_INT_BITS:,}"
        )


def printf_size(template: Any, values: Any, budget: Budget) -> int:
    """The size `template % values` could have: its text, its fields' widths, the values.

    Stops counting once the size is past what the budget has left.
    """
    if isinstance(template, bytes):
        template = template.decode("latin-1")
    if not isinstance(template, str):
        return 0
    left = budget.limits.max_size - budget.size
    size = len(template) + measured(values, budget)
    star = 0
    if "*" in template:
        given = values if isinstance(values, tuple) else (values,)
        star = max((as_count(value) for value in given), default=0)
    for index, field in enumerate(_PRINTF.finditer(template)):
        if size > left:
            break
        if not index % 4096:
            budget.check_time()
        for number in field.groups():
            if number == "*":
                size += star
            elif number:
                size += int(number)
    return size


def _materialized(value: Any, budget: Budget) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        return value
    items = []
    for item in value:
        budget.step()
        items.append(item)
    return items


def _center(budget: Budget, value: Any, width: Any = 80) -> Sized:
    return max(measured(value, budget), as_count(width)), (value, width), {}


def _indent(
    budget: Budget, s: Any, width: Any = 4, first: Any = False, blank: Any = False
) -> Sized:
    length = measured(s, budget)
    lines = s.count("\n") + 1 if isinstance(s, str) else length + 1
    pad = len(width) if isinstance(width, str) else as_count(width)
    return length + lines * pad, (s, width, first, blank), {}


def _wordwrap(budget: Budget, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Sized:
    length = measured(s, budget)
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    joint = len(wrapstring) if isinstance(wrapstring, str) else 1
    # Lines break between words, and inside words longer than `width`.
    words = len(s.split()) if isinstance(s, str) else length
    breaks = words + length // max(as_count(width), 1) + 1
    return length + breaks * joint, (s, width, *args), kwargs


def _join(budget: Budget, value: Any, d: Any = "", attribute: Any = None) -> Sized:
    items = _materialized(value, budget)
    separators = measured(d, budget) * max(len(items) - 1, 0)
    content = measured(items, budget) if attribute is None else 0
    return separators + content, (items, d, attribute), {}


def _replace(budget: Budget, s: Any, old: Any, new: Any, count: Any = None) -> Sized:
    return _replace_size(s, old, new, count), (s, old, new, count), {}


def _format(budget: Budget, value: Any, *args: Any, **kwargs: Any) -> Sized:
    return printf_size(value, kwargs or args, budget), (value, *args), kwargs


def _tojson(budget: Budget, value: Any, indent: Any = None) -> Sized:
    size = measured(value, budget)
    pad = len(indent) if isinstance(indent, str) else as_count(indent)
    if pad:
        count, depth = _shape(value, budget)
        size += count * (1 + pad * depth)
    return size, (value, indent), {}


def _batch(budget: Budget, value: Any, linecount: Any, fill_with: Any = None) -> Sized:
    # The last batch is padded with up to `linecount` copies of `fill_with`.
    size = 0 if fill_with is None else as_count(linecount) * _filler(fill_with, budget)
    return size, (value, linecount, fill_with), {}


def _slice(budget: Budget, value: Any, slices: Any, fill_with: Any = None) -> Sized:
    return as_count(slices) * _filler(fill_with, budget), (value, slices, fill_with), {}


def _filler(fill_with: Any, budget: Budget) -> int:
    """What one padding item costs: its size, shared parts counted in full (at least 1)."""
    return 1 if fill_with is None else max(1, structure(fill_with, budget))


def _sum(budget: Budget, iterable: Any, attribute: Any = None, start: Any = 0) -> Sized:
    if isinstance(start, (int, float)):
        return 0, (iterable, attribute, start), {}
    # Adding lists copies the total so far at each step; the result holds every item's parts.
    items = _materialized(iterable, budget)
    total = sum(len(item) for item in items if isinstance(item, (str, list, tuple)))
    size = total * max(len(items), 1) + structure(items, budget) + structure(start, budget)
    return size, (items, attribute, start), {}


def _round(budget: Budget, value: Any, precision: Any = 0, method: Any = "common") -> Sized:
    if isinstance(precision, int) and abs(precision) > _MAX_ROUND_DIGITS:
        raise BudgetExceededError(
            f"round() to {about(precision)} digits; the limit is {_MAX_ROUND_DIGITS:,}"
        )
    return 0, (value, precision, method), {}


def _whole(budget: Budget, value: Any, *args: Any, **kwargs: Any) -> Sized:
    return measured(value, budget), (value, *args), kwargs


FILTER_ESTIMATES: dict[str, Callable[..., Sized]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "join": _join,
    "replace": _replace,
    "format": _format,
    "tojson": _tojson,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "round": _round,
    "string": _whole,
    "pprint": _whole,
}
"""`estimate(budget, *args, **kwargs) -> (size, args, kwargs)` for the filters that can build
much more than they are given: the size to charge first, and the arguments to call the filter
with (an iterable comes back as a list, so it is not consumed twice)."""


def _replace_size(s: Any, old: Any, new: Any, count: Any) -> int:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(len(new) - len(old), 0)


def _shape(value: Any, budget: Budget) -> tuple[int, int]:
    """How many values `value` holds and how deeply they nest."""
    count, deepest = 0, 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if not count % 4096:
            budget.check_time()
        deepest = max(deepest, depth)
        if isinstance(item, Mapping):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
    return count, deepest


def method_size(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> Any:
    """`(size, args)` for the built-in methods that grow text, or `None` for the others."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, int) and name == "to_bytes":
        return as_count(args[0] if args else kwargs.get("length", 1)), args
    if not isinstance(owner, (str, bytes)):
        return None
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(owner), as_count(first)), args
    text = owner.decode("latin-1") if isinstance(owner, bytes) else owner
    if name == "expandtabs":
        tabsize = as_count(first if args else kwargs.get("tabsize", 8))
        return len(text) + text.count("\t") * tabsize, args
    if name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        old, new = (_latin(value) for value in args[:2])
        return _replace_size(text, old, new, count), args
    if name == "join" and args:
        items = _materialized(args[0], budget)
        return measured(items, budget) + len(owner) * max(len(items) - 1, 0), (items, *args[1:])
    if name == "translate" and isinstance(first, Mapping):
        longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
        return len(owner) * max(longest, 1), args
    return None


def _latin(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def built_size(value: Any) -> int:
    """The characters or items of a value already built (0 for what has no length)."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0
