"""JSONPath from specs, bounded: every value visited or selected is counted, regexes and
arithmetic go through jib's guarded versions.

jsonpath-ng walks eagerly, in lists: `$..a..a..a` on a 2 KB answer nested 300 levels deep selects
millions of values, and `$..*` on a large body builds one Python object per value before
anything can look at them. `bounded()` rewrites a parsed path so that, against the active budget
(`_budget`):

- every step of the path that can select many values counts one step per call, plus
  `SELECTED_STEPS` per value it selects (each selected value is a Python object of about 250
  bytes until the step ends); `$`, `@`, `.name`, `[0]` and `a.b` select no more than the path
  names for each value a counted step selected, and are not metered;
- steps that fan out (`*`, `[*]`, slices, `[?…]` filters, `keys`, `sorted`, `split`) count the
  values they are about to look at before making them;
- `..` walks the data one value at a time, counting each and what it selects there, instead of
  listing every value first;
- regexes (`=~` filters, `sub()`) are checked before compiling and matched with the time left;
- `*` and `+` charge what they would build (`$.a * $.b` on `{"a": "x", "b": 1000000000}` is a
  gigabyte), and `str()` charges the text it writes.

What a JSONPath step writes is charged by `transforms` (`match_text`). jsonpath-ng is imported
with this module, which `transforms` imports on first use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from jsonpath_ng import DatumInContext, JSONPath
from jsonpath_ng import jsonpath as _parsed
from jsonpath_ng.ext.arithmetic import Operation
from jsonpath_ng.ext.filter import Expression, Filter
from jsonpath_ng.ext.iterable import Keys, SortedThis
from jsonpath_ng.ext.string import Split, Str, Sub
from jsonpath_ng.jsonpath import (
    Child,
    Descendants,
    Fields,
    Index,
    Root,
    Slice,
    This,
    Where,
    _Intersect,
    _Union,
)

from jib.generator.http._budget import HELD_VALUE_STEPS, Budget, current_budget
from jib.generator.http._estimates import check_bits, measured
from jib.generator.http._regex import CompiledRegex

__all__ = ["MAX_JSONPATH_LENGTH", "SELECTED_STEPS", "bounded", "regexes"]

MAX_JSONPATH_LENGTH = 10_000
"""The longest JSONPath accepted, in characters."""

SELECTED_STEPS = HELD_VALUE_STEPS
"""Steps (`RenderLimits.max_steps`) a JSONPath counts per value it selects: a selected value
is held as an object of about 250 bytes, so the default million steps hold at most 60 MB."""

# jsonpath-ng before 1.8 writes `*` as `Fields('*')` and `[*]` as `Slice()`, with no `Wildcard`.
_FIELD_PATH: Callable[[Any], JSONPath] = getattr(Fields, "_compliant_constructor", Fields)
_FAN_OUT_STEPS: tuple[type[JSONPath], ...] = (
    Slice,
    Filter,
    Keys,
    *((_parsed.Wildcard,) if hasattr(_parsed, "Wildcard") else ()),
)


class _RegexFilter(Expression):
    """`[?(@.field =~ 'pattern')]`: the `regex` package, with the budget's time."""

    def __init__(self, target: Any, pattern: str) -> None:
        super().__init__(target, "=~", pattern)
        self.regex = CompiledRegex(pattern)

    def find(self, datum: Any) -> list[Any]:
        found = self.target.find(DatumInContext.wrap(datum))
        return [
            match
            for match in found
            if isinstance(match.value, str) and self.regex.search(match.value) is not None
        ]


class _BoundedSub:
    """What `Sub` calls as its compiled pattern: `sub(replacement, text)`, bounded."""

    def __init__(self, pattern: str) -> None:
        self.regex = CompiledRegex(pattern)

    def sub(self, replacement: str, text: Any) -> str:
        if not isinstance(text, str):
            raise TypeError(f"sub() needs text, not {type(text).__name__}")
        return self.regex.sub(replacement, text)


class _BoundedDescendants(Descendants):
    """`left..right`, walking the data one value at a time and counting each one visited.

    jsonpath-ng's own walk makes an object for every child of a value before visiting the
    first; this one makes each when it is reached, so a wide array costs its count in steps,
    not its size in memory at once.
    """

    def find(self, datum: Any) -> list[DatumInContext]:
        budget = current_budget()
        right_find = self.right.find
        # What the right side selects is counted here unless it counts it itself.
        selected_steps = 0 if _counts_itself(self.right) else SELECTED_STEPS
        matches: list[DatumInContext] = []
        pending: list[Iterator[DatumInContext]] = [iter(self.left.find(datum))]
        while pending:
            node = next(pending[-1], None)
            if node is None:
                pending.pop()
                continue
            found = right_find(node)
            budget.step(1 + selected_steps * len(found))
            matches.extend(found)
            value = node.value
            if isinstance(value, list):
                pending.append(_children_of_list(node, value))
            elif isinstance(value, dict):
                pending.append(_children_of_dict(node, value))
        return matches


def _children_of_list(node: DatumInContext, value: list[Any]) -> Iterator[DatumInContext]:
    for index, child in enumerate(value):
        yield DatumInContext(child, context=node, path=Index(index))


def _children_of_dict(node: DatumInContext, value: dict[Any, Any]) -> Iterator[DatumInContext]:
    for field, child in value.items():
        yield DatumInContext(child, context=node, path=_FIELD_PATH(field))


def _bounded_operation(symbol: str, apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    what = f"jsonpath '{symbol}'"

    def operation(left: Any, right: Any) -> Any:
        budget = current_budget()
        if symbol == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list)) and isinstance(count, int):
                    budget.charge(measured(sequence, budget) * max(count, 0), what)
                    return apply(left, right)
            if isinstance(left, int) and isinstance(right, int):
                check_bits(left.bit_length() + right.bit_length(), what)
        elif isinstance(left, (str, list)) and type(left) is type(right):
            budget.charge(measured(left, budget) + measured(right, budget), what)
        return apply(left, right)

    return operation


def _split_parts(node: JSONPath, value: Any) -> int:
    """How many parts `split()` makes of `value`."""
    if not isinstance(value, str):
        return 0
    chars = getattr(node, "chars", None)
    return value.count(chars) + 1 if isinstance(chars, str) and chars else len(value)


def _sort_pairs(node: JSONPath, value: Any) -> int:
    """About how many pairs sorting `value` compares: n·log2(n)."""
    if not isinstance(value, (list, dict)):
        return 0
    return len(value) * max(1, math.ceil(math.log2(len(value) + 1)))


def _children(node: JSONPath, value: Any) -> int:
    return len(value) if isinstance(value, (list, dict)) else 0


def _fan_out(node: JSONPath) -> Callable[[JSONPath, Any], int] | None:
    """How to count the values `node` looks at before selecting any, or `None` if it does not
    look at more than it selects."""
    if isinstance(node, Split):
        return _split_parts
    if isinstance(node, SortedThis):
        return _sort_pairs
    if isinstance(node, _FAN_OUT_STEPS) or (isinstance(node, Fields) and "*" in node.fields):
        return _children
    return None


# Steps that pass on what their parts selected: those values are counted once, by the parts.
_PASSING_ON = (Child, Descendants, Where, _Union, _Intersect)
# Steps left unmetered: each call selects at most as many values as the path names (`$`, `@`,
# `.name`, `[0]`), for a value some counted step selected; and `a.b`, which only passes on what
# `b` selects for each of `a`'s. Metering them would cost more than what they do.
_UNMETERED: tuple[type[JSONPath], ...] = (Root, This, Index, Child)


def _counts_itself(node: JSONPath) -> bool:
    """Whether `node` counts what it selects (it was metered)."""
    return "find" in vars(node)


def _metered(node: JSONPath) -> None:
    """Make `node.find` count its call, its fan-out and what it selects (see the module)."""
    if type(node) in _UNMETERED or (type(node) is Fields and "*" not in node.fields):
        return
    original: Callable[[Any], list[DatumInContext]] = node.find
    selected_steps = 0 if isinstance(node, _PASSING_ON) else SELECTED_STEPS
    fan_out = _fan_out(node)
    writes_text = isinstance(node, Str)

    def find(datum: Any) -> list[DatumInContext]:
        budget = current_budget()
        if fan_out is not None or writes_text:
            value = datum.value if isinstance(datum, DatumInContext) else datum
            if fan_out is not None:
                budget.step(fan_out(node, value))
            if writes_text:
                _charge_text(budget, value)
        found = original(datum)
        budget.step(1 + selected_steps * len(found))
        return found

    # An attribute of the instance shadows the class's method, also for calls from its parents.
    setattr(node, "find", find)  # noqa: B010 - mypy refuses assigning to a method


def _charge_text(budget: Budget, value: Any) -> None:
    budget.charge(measured(value, budget), "jsonpath str()")


def bounded(path: JSONPath) -> JSONPath:
    """`path` rewritten to run within the active budget (see the module docstring).

    Raises:
        ValueError: a regex in the path is invalid or too expensive.
    """
    if isinstance(path, Expression) and path.op == "=~" and isinstance(path.value, str):
        path = _RegexFilter(path.target, path.value)
    elif isinstance(path, Descendants) and not isinstance(path, _BoundedDescendants):
        path = _BoundedDescendants(path.left, path.right)
    if isinstance(path, Sub) and not isinstance(path.regex, _BoundedSub):
        # `Sub.find` only calls `self.regex.sub(replacement, text)`.
        setattr(path, "regex", _BoundedSub(path.expr))  # noqa: B010
    if isinstance(path, Operation) and path.op_symbol in ("*", "+"):
        path.op = _bounded_operation(path.op_symbol, path.op)
    for name, value in list(vars(path).items()):
        if isinstance(value, JSONPath):
            setattr(path, name, bounded(value))
        elif isinstance(value, list):
            value[:] = [_bounded_item(item) for item in value]
        elif isinstance(value, tuple):
            setattr(path, name, tuple(_bounded_item(item) for item in value))
    _metered(path)
    return path


def _bounded_item(item: Any) -> Any:
    if isinstance(item, JSONPath):
        return bounded(item)
    if isinstance(item, tuple):  # `sorted`'s (expression, reverse) pairs
        return tuple(_bounded_item(part) for part in item)
    return item


def regexes(path: JSONPath) -> list[CompiledRegex]:
    """The regexes a bounded path matches with (`=~` filters, `sub()` calls)."""
    found: list[CompiledRegex] = []
    stack = [path]
    while stack:
        node = stack.pop()
        if isinstance(node, _RegexFilter):
            found.append(node.regex)
        elif isinstance(node, Sub) and isinstance(node.regex, _BoundedSub):
            found.append(node.regex.regex)
        for value in vars(node).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                parts = item if isinstance(item, tuple) else (item,)
                stack.extend(part for part in parts if isinstance(part, JSONPath))
    return found
