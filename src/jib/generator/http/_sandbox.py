"""The Jinja environment spec templates render in: the immutable sandbox, metered by a budget.

Jinja's sandbox stops templates from reaching Python internals but not from working forever, so
this environment routes every place where a template can loop, call or grow a value through the
active `Budget` (see `_budget`):

- every `{% for %}` iterates through `budgeted_iter` (the templates are rewritten at compile
  time), which counts a step per item and charges the loop's literal text per item;
- every call (macros, functions, methods, recursive loops) counts a step; string methods that
  pad or grow (`center`, `ljust`, `zfill`, `replace`, `join`, `translate`, …) charge the size
  they would build before building it, and other built-in methods charge what they returned;
- the operators `*`, `**`, `+`, `%` and `~`, `str.format` and the filters that pad, join or
  format charge their result's size first, and numbers are kept below `MAX_INT_BITS` bits;
- every printed value (`{{ … }}`, in macros and `{% set %}` blocks too) charges its size, and
  `range()` charges its length;
- every hook checks the clock.

Constant folding is off (`optimized=False` and a finalize that needs the evaluation context), so
nothing a template asks for runs while it is compiled.

jinja2 is imported with this module, which `transforms` imports on first use.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterator, Mapping
from string import Formatter
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, markup_join, str_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    safe_range,
)
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from jib.errors import BudgetExceededError
from jib.generator.http._budget import Budget, current_budget
from jib.generator.http._text import text_size

__all__ = ["MAX_INT_BITS", "BudgetedSandbox", "make_environment"]

MAX_INT_BITS = 65_536
"""The largest number (in bits) `*` and `**` may make: about 19,700 decimal digits."""

_MAX_ROUND_DIGITS = 1_000
_NUMBER = re.compile(r"\d+")
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")

# -- sizes ---------------------------------------------------------------------------------------


def _size(value: Any, budget: Budget) -> int:
    limit = budget.limits.max_size - budget.size
    return text_size(value, limit, budget.check_time)


def _count(value: Any) -> int:
    """An int argument as a non-negative count; anything else counts 0 (the callee complains)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def _check_bits(bits: int, operator: str) -> None:
    if bits > MAX_INT_BITS:
        raise BudgetExceededError(
            f"'{operator}' would make a number of about {bits:,} bits; the limit is "
            f"{MAX_INT_BITS:,}"
        )


def _printf_size(template: Any, values: Any, budget: Budget) -> int:
    """The size `template % values` could have: its text, its fields' widths, the values.

    Stops counting once the size is past what the budget has left.
    """
    if isinstance(template, bytes):
        template = template.decode("latin-1")
    if not isinstance(template, str):
        return 0
    left = budget.limits.max_size - budget.size
    size = len(template) + _size(values, budget)
    star = 0
    if "*" in template:
        given = values if isinstance(values, tuple) else (values,)
        star = max((_count(value) for value in given), default=0)
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


# -- estimates of filters and methods --------------------------------------------------------------


Sized = tuple[int, tuple[Any, ...], dict[str, Any]]


def _center(budget: Budget, value: Any, width: Any = 80) -> Sized:
    return max(_size(value, budget), _count(width)), (value, width), {}


def _indent(
    budget: Budget, s: Any, width: Any = 4, first: Any = False, blank: Any = False
) -> Sized:
    length = _size(s, budget)
    lines = s.count("\n") + 1 if isinstance(s, str) else length + 1
    pad = len(width) if isinstance(width, str) else _count(width)
    return length + lines * pad, (s, width, first, blank), {}


def _wordwrap(budget: Budget, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Sized:
    length = _size(s, budget)
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    joint = len(wrapstring) if isinstance(wrapstring, str) else 1
    # Lines break between words, and inside words longer than `width`.
    words = len(s.split()) if isinstance(s, str) else length
    breaks = words + length // max(_count(width), 1) + 1
    return length + breaks * joint, (s, width, *args), kwargs


def _join(budget: Budget, value: Any, d: Any = "", attribute: Any = None) -> Sized:
    items = _materialized(value, budget)
    separators = _size(d, budget) * max(len(items) - 1, 0)
    content = _size(items, budget) if attribute is None else 0
    return separators + content, (items, d, attribute), {}


def _replace(budget: Budget, s: Any, old: Any, new: Any, count: Any = None) -> Sized:
    return _replace_size(s, old, new, count), (s, old, new, count), {}


def _format(budget: Budget, value: Any, *args: Any, **kwargs: Any) -> Sized:
    return _printf_size(value, kwargs or args, budget), (value, *args), kwargs


def _tojson(budget: Budget, value: Any, indent: Any = None) -> Sized:
    size = _size(value, budget)
    pad = len(indent) if isinstance(indent, str) else _count(indent)
    if pad:
        count, depth = _shape(value, budget)
        size += count * (1 + pad * depth)
    return size, (value, indent), {}


def _batch(budget: Budget, value: Any, linecount: Any, fill_with: Any = None) -> Sized:
    size = _count(linecount) if fill_with is not None else 0
    return size, (value, linecount, fill_with), {}


def _slice(budget: Budget, value: Any, slices: Any, fill_with: Any = None) -> Sized:
    return _count(slices), (value, slices, fill_with), {}


def _sum(budget: Budget, iterable: Any, attribute: Any = None, start: Any = 0) -> Sized:
    if isinstance(start, (int, float)):
        return 0, (iterable, attribute, start), {}
    # Adding lists copies the total so far at each step.
    items = _materialized(iterable, budget)
    total = sum(len(item) for item in items if isinstance(item, (str, list, tuple)))
    return total * max(len(items), 1), (items, attribute, start), {}


def _round(budget: Budget, value: Any, precision: Any = 0, method: Any = "common") -> Sized:
    if isinstance(precision, int) and abs(precision) > _MAX_ROUND_DIGITS:
        raise BudgetExceededError(
            f"round() to {precision:,} digits; the limit is {_MAX_ROUND_DIGITS:,}"
        )
    return 0, (value, precision, method), {}


def _whole(budget: Budget, value: Any, *args: Any, **kwargs: Any) -> Sized:
    return _size(value, budget), (value, *args), kwargs


_FILTER_ESTIMATES: dict[str, Callable[..., Sized]] = {
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


def _method_size(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> Any:
    """`(size, args)` for the built-in methods that grow text, or `None` for the others."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, int) and name == "to_bytes":
        return _count(args[0] if args else kwargs.get("length", 1)), args
    if not isinstance(owner, (str, bytes)):
        return None
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(owner), _count(first)), args
    text = owner.decode("latin-1") if isinstance(owner, bytes) else owner
    if name == "expandtabs":
        tabsize = _count(first if args else kwargs.get("tabsize", 8))
        return len(text) + text.count("\t") * tabsize, args
    if name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        old, new = (_latin(value) for value in args[:2])
        return _replace_size(text, old, new, count), args
    if name == "join" and args:
        items = _materialized(args[0], budget)
        return _size(items, budget) + len(owner) * max(len(items) - 1, 0), (items, *args[1:])
    if name == "translate" and isinstance(first, Mapping):
        longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
        return len(owner) * max(longest, 1), args
    return None


def _latin(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _built_size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


# -- formatting ----------------------------------------------------------------------------------


class _BudgetedFields(Formatter):
    """`str.format` fields charged to the budget before they are formatted."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current_budget()
        widths = [int(number) for number in _NUMBER.findall(format_spec)]
        budget.charge(max(widths, default=0) + _size(value, budget), "str.format()")
        return super().format_field(value, format_spec)


class _Formatter(_BudgetedFields, SandboxedFormatter):
    pass


class _EscapeFormatter(_BudgetedFields, SandboxedEscapeFormatter):
    pass


# -- compile-time rewriting --------------------------------------------------------------------


class _Instrument(NodeTransformer):
    """Sends loops and `~` through the environment's budgeted helpers."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self.environment = environment

    def _helper_call(self, name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
        call = nodes.Call(
            nodes.EnvironmentAttribute(name, lineno=lineno), args, [], None, None, lineno=lineno
        )
        call.set_environment(self.environment)
        return call

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        weight = nodes.Const(_literal_size(node.body), lineno=node.lineno)
        iterable = cast(nodes.Expr, node.iter)
        node.iter = self._helper_call("budgeted_iter", [iterable, weight], iterable.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return self._helper_call("budgeted_concat", [items], node.lineno)


def _literal_size(body: list[nodes.Node]) -> int:
    """Characters of template text one pass of a loop body prints (nested loops count their own)."""
    total = 0
    stack: list[nodes.Node] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif isinstance(node, nodes.For):
            stack.extend(node.else_)
        elif not isinstance(node, (nodes.Macro, nodes.CallBlock)):
            stack.extend(node.iter_child_nodes())
    return total


class _BudgetedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Instrument(self.environment).visit(node)
        super().visit_Template(node, frame)


# -- the environment -----------------------------------------------------------------------------


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every loop, call, operator and output metered."""

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**`, `+` and `%`, charged to the budget before they run."""
        budget = current_budget()
        budget.check_time()
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                _check_bits(left.bit_length() * right, "**")
        elif operator == "*":
            self._charge_product(budget, left, right)
        elif operator == "+":
            if isinstance(left, (str, bytes, list, tuple)) and type(left) is type(right):
                budget.charge(len(left) + len(right), "'+'")
        elif operator == "%" and isinstance(left, (str, bytes)):
            budget.charge(_printf_size(left, right, budget), "'%' formatting")
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def _charge_product(budget: Budget, left: Any, right: Any) -> None:
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, bytes, list, tuple)) and isinstance(count, int):
                budget.charge(len(sequence) * _count(count), "'*'")
                return
        if isinstance(left, int) and isinstance(right, int):
            _check_bits(left.bit_length() + right.bit_length(), "*")

    def call(
        __self,  # Jinja's signature: the dunder names cannot clash with keyword arguments
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call from a template: one step; growing built-in methods are charged first."""
        budget = current_budget()
        budget.step()
        if isinstance(__obj, LoopContext) and args:
            # A recursive loop's `loop(children)` iterates the children itself.
            args = (__self.budgeted_iter(args[0]), *args[1:])
        builtin = isinstance(__obj, types.BuiltinMethodType)
        estimate = _method_size(__obj, args, kwargs, budget) if builtin else None
        if estimate is not None:
            size, args = estimate
            budget.charge(size, f"{getattr(__obj, '__name__', 'method')}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if builtin and estimate is None:
            budget.charge(_built_size(result), f"{getattr(__obj, '__name__', 'method')}()")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `str.format_map`, sandboxed, with every field charged first."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        formatter: SandboxedFormatter
        if isinstance(owner, Markup):
            formatter = _EscapeFormatter(self, escape=owner.escape)
        else:
            formatter = _Formatter(self)
        is_format_map = value.__name__ == "format_map"
        owner_type = type(owner)

        def format_(*args: Any, **kwargs: Any) -> str:
            current_budget().charge(len(owner), "str.format()")
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return owner_type(formatter.vformat(owner, args, kwargs))

        return functools.update_wrapper(format_, value)

    def budgeted_iter(self, iterable: Any, weight: int = 0) -> Iterator[Any]:
        """`iterable`, one step per item, charging `weight` characters of loop text per item."""
        budget = current_budget()
        for item in iterable:
            budget.step()
            if weight:
                budget.charge(weight, "a loop's text")
            yield item

    @jinja2.pass_eval_context
    def budgeted_concat(self, eval_ctx: EvalContext, items: list[Any]) -> str:
        """`a ~ b ~ …`, charged before the pieces are joined."""
        budget = current_budget()
        budget.charge(sum(_size(item, budget) for item in items), "'~'")
        return str(markup_join(items) if eval_ctx.autoescape else str_join(items))


@jinja2.pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Any:
    # Needing the evaluation context also stops Jinja from evaluating output at compile time.
    budget = current_budget()
    budget.charge(len(value) if type(value) is str else _size(value, budget), "the output")
    return value


def _budgeted_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` counting a step per call and charging what it builds."""
    # Filters marked with `pass_context` and the like get that object first.
    skip = 1 if hasattr(function, "jinja_pass_arg") else 0
    estimate = _FILTER_ESTIMATES.get(name)
    what = f"the filter '{name}'"

    @functools.wraps(function)
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.step()
        if estimate is not None:
            try:
                size, given, kwargs = estimate(budget, *args[skip:], **kwargs)
            except TypeError:
                pass  # the wrong arguments: the filter itself says so
            else:
                budget.charge(size, what)
                args = (*args[:skip], *given)
                return function(*args, **kwargs)
        result = function(*args, **kwargs)
        budget.charge(_built_size(result), what)
        return result

    return budgeted


def _budgeted_range(*args: int) -> range:
    numbers = safe_range(*args)
    current_budget().charge(len(numbers), "range()")
    return numbers


def _budgeted_lipsum(function: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(function)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        # A paragraph holds up to `max` words of up to 12 characters.
        current_budget().charge(_count(n) * (_count(max) * 13 + 20), "lipsum()")
        return function(n, html, min, max)

    return lipsum


def make_environment(
    globals: Mapping[str, Any] | None = None,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> BudgetedSandbox:
    """A budgeted sandbox with a strict undefined, no autoescaping, and these extras."""
    env = BudgetedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=_finalize,
        optimized=False,
    )
    env.globals.update(globals or {})
    env.globals["range"] = _budgeted_range
    env.globals["lipsum"] = _budgeted_lipsum(cast("Callable[..., str]", env.globals["lipsum"]))
    env.filters.update(filters or {})
    env.filters = {name: _budgeted_filter(name, function) for name, function in env.filters.items()}
    return env
