"""JSONPath from specs, bounded: regex filters, `sub()` and `*` go through jib's guarded versions.

jsonpath-ng's extensions match `=~` and `sub(/…/, …)` with the standard `re` module, which has no
timeout (`$[?(@.a =~ '(a+)+$')]` doubles its time per character), and `*` multiplies whatever it
finds (`$.a * $.b` on `{"a": "x", "b": 1000000000}` builds a gigabyte). `bounded()` rewrites a
parsed path so regexes are checked before compiling and matched with the time left in the active
budget, and products are charged to it before they are built.

jsonpath-ng is imported with this module, which `transforms` imports on first use.
"""

from __future__ import annotations

import operator
from typing import Any

from jsonpath_ng import DatumInContext, JSONPath
from jsonpath_ng.ext.arithmetic import Operation
from jsonpath_ng.ext.filter import Expression
from jsonpath_ng.ext.string import Sub

from jib.errors import BudgetExceededError
from jib.generator.http._budget import current_budget
from jib.generator.http._regex import CompiledRegex

__all__ = ["MAX_JSONPATH_LENGTH", "bounded", "regexes"]

MAX_JSONPATH_LENGTH = 10_000
"""The longest JSONPath accepted, in characters."""

_MAX_INT_BITS = 65_536


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


def _bounded_multiply(left: Any, right: Any) -> Any:
    budget = current_budget()
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list)) and isinstance(count, int):
            budget.charge(len(sequence) * max(count, 0), "jsonpath '*'")
            return operator.mul(left, right)
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > _MAX_INT_BITS:
            raise BudgetExceededError(
                f"jsonpath '*' would make a number of about {bits:,} bits; "
                f"the limit is {_MAX_INT_BITS:,}"
            )
    return operator.mul(left, right)


def bounded(path: JSONPath) -> JSONPath:
    """`path` with its `=~` filters, `sub()` calls and `*` operations replaced by bounded ones.

    Raises:
        ValueError: a regex in the path is invalid or too expensive.
    """
    if isinstance(path, Expression) and path.op == "=~" and isinstance(path.value, str):
        return _RegexFilter(bounded(path.target), path.value)
    if isinstance(path, Sub) and not isinstance(path.regex, _BoundedSub):
        # `Sub.find` only calls `self.regex.sub(replacement, text)`.
        setattr(path, "regex", _BoundedSub(path.expr))  # noqa: B010
    if isinstance(path, Operation) and path.op_symbol == "*":
        path.op = _bounded_multiply
    for name, value in vars(path).items():
        if isinstance(value, JSONPath):
            setattr(path, name, bounded(value))
        elif isinstance(value, list):
            value[:] = [bounded(item) if isinstance(item, JSONPath) else item for item in value]
        elif isinstance(value, tuple):
            setattr(
                path,
                name,
                tuple(bounded(item) if isinstance(item, JSONPath) else item for item in value),
            )
    return path


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
            stack.extend(item for item in items if isinstance(item, JSONPath))
    return found
