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
  format charge their result's size first (`_estimates`), and numbers are kept below
  `MAX_INT_BITS` bits;
- every printed value (`{{ … }}`, in macros and `{% set %}` blocks too) charges its size, and
  `range()` charges its length;
- every list, tuple or dict a template builds (literals, `+`, `*`, `dict()`, `namespace()`,
  `cycler()`, macro `varargs`, filters and methods that return new ones, items yielded by
  filters that return generators) charges its structure's size *counting shared parts each
  time they are reached* (`estimates.structure`: items, a string one per 100 characters):
  `{% set a = [a, a] %}` forty times over would be 2^40 items to compare, sort, hash or print,
  so it is refused at about 2^20. Comparisons, membership tests, sorts and hashes then run in C
  on values no larger than the budget;
- every hook checks the clock.

A missing variable, attribute or item is reported by name only when that name is written in the
template (`SpecUndefined`): `state[api_key|reverse]` must not put the key, reversed, in an error
message that is stored.

Constant folding is off (`optimized=False` and a finalize that needs the evaluation context), so
nothing a template asks for runs while it is compiled.

jinja2 is imported with this module, which `transforms` imports on first use.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from string import Formatter
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    safe_range,
)
from jinja2.utils import Cycler, Joiner, Namespace, missing, object_type_repr
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from jib.generator.http import _estimates as estimates
from jib.generator.http._budget import Budget, current_budget

__all__ = [
    "SOURCE_NAMES",
    "BudgetedSandbox",
    "SpecTemplate",
    "SpecUndefined",
    "make_environment",
    "written_names",
]

_NUMBER = re.compile(r"\d+")
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Globals that keep what they are given: what they build holds their arguments.
_KEEPERS: tuple[Any, ...] = (dict, Cycler, Joiner, Namespace)
# Filters and methods that return a value they were given (or one inside it), not a new one.
_PICKING_FILTERS = frozenset({"attr", "d", "default", "first", "last", "max", "min", "random"})
_PICKING_METHODS = frozenset({"get", "pop", "setdefault"})

# -- names a template writes ---------------------------------------------------------------------

SOURCE_NAMES: ContextVar[frozenset[object]] = ContextVar("jib_template_names", default=frozenset())
"""The names the template being rendered wrote (`written_names`): what `SpecUndefined` may
quote. `render_jinja` sets it around each render."""


class SpecTemplate(jinja2.Template):
    """A compiled spec template, with the names its source writes (see `written_names`) and
    the context variables it reads (`read_names`)."""

    source_names: frozenset[object] = frozenset()
    read_names: frozenset[str] = frozenset()


def read_names(template: nodes.Template) -> frozenset[str]:
    """The context variables a parsed template reads (`content`, `messages`, `tools`, …): what
    a request built from it can carry."""
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(template))


def written_names(template: nodes.Template) -> frozenset[object]:
    """The variable and attribute names and the literal strings and numbers of a parsed
    template: what its error messages may quote (the spec's author wrote them)."""
    names: set[object] = {node.name for node in template.find_all(nodes.Name)}
    names.update(node.attr for node in template.find_all(nodes.Getattr))
    names.update(
        node.value
        for node in template.find_all(nodes.Const)
        if isinstance(node.value, (str, int)) and not isinstance(node.value, bool)
    )
    return frozenset(names)


class SpecUndefined(jinja2.StrictUndefined):
    """Jinja's strict undefined, quoting a missing name only when the template wrote it.

    `{{ nobody }}` says `'nobody' is undefined`; `{{ state[api_key|reverse] }}` says the dict has
    no item of a name the template computed, without the name: it came from the data.
    """

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        written = SOURCE_NAMES.get()
        try:
            shown = name in written
        except TypeError:  # unhashable: a computed list or dict
            shown = False
        if self._undefined_obj is missing:
            return f"{name!r} is undefined" if shown else "a variable is undefined"
        owner = object_type_repr(self._undefined_obj)
        if not shown:
            return (
                f"{owner!r} has no attribute or item of the name the template computed (not "
                "shown: it comes from the data)"
            )
        if not isinstance(name, str):
            return f"{owner} has no element {name!r}"
        return f"{owner!r} has no attribute {name!r}"


# -- formatting ----------------------------------------------------------------------------------


class _BudgetedFields(Formatter):
    """`str.format` fields charged to the budget before they are formatted."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current_budget()
        widths = [int(number) for number in _NUMBER.findall(format_spec)]
        budget.charge(max(widths, default=0) + estimates.measured(value, budget), "str.format()")
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

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return self._helper_call("budgeted_built", [node], node.lineno)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return self._helper_call("budgeted_built", [node], node.lineno)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        if node.ctx != "load":  # a target (`{% for a, b in … %}`), not a value
            return node
        return self._helper_call("budgeted_built", [node], node.lineno)


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
                estimates.check_bits(left.bit_length() * right, "**")
        elif operator == "*":
            self._charge_product(budget, left, right)
        elif operator == "+":
            if isinstance(left, (str, bytes)) and type(left) is type(right):
                budget.charge(len(left) + len(right), "'+'")
            elif isinstance(left, (list, tuple)) and type(left) is type(right):
                size = estimates.structure(left, budget) + estimates.structure(right, budget)
                budget.charge(size, "'+'")
        elif operator == "%" and isinstance(left, (str, bytes)):
            budget.charge(estimates.printf_size(left, right, budget), "'%' formatting")
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def _charge_product(budget: Budget, left: Any, right: Any) -> None:
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, bytes)) and isinstance(count, int):
                budget.charge(len(sequence) * estimates.as_count(count), "'*'")
                return
            if isinstance(sequence, (list, tuple)) and isinstance(count, int):
                size = estimates.structure(sequence, budget) * estimates.as_count(count)
                budget.charge(size, "'*'")
                return
        if isinstance(left, int) and isinstance(right, int):
            estimates.check_bits(left.bit_length() + right.bit_length(), "*")

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
        elif any(__obj is keeper for keeper in _KEEPERS) or (
            isinstance(__obj, Macro) and (__obj.catch_varargs or __obj.catch_kwargs)
        ):
            # What it builds (a dict, a namespace, `varargs`) holds these arguments.
            size = estimates.structure(args, budget) + estimates.structure(kwargs, budget)
            label = getattr(__obj, "__name__", None) or getattr(__obj, "name", "a call")
            budget.charge(size, f"{label}()")
        builtin = isinstance(__obj, types.BuiltinMethodType)
        name = getattr(__obj, "__name__", "method")
        estimate = estimates.method_size(__obj, args, kwargs, budget) if builtin else None
        if estimate is not None:
            size, args = estimate
            budget.charge(size, f"{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if builtin and estimate is None and name not in _PICKING_METHODS:
            budget.charge(_built_size(result, budget), f"{name}()")
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

    def budgeted_built(self, value: Any) -> Any:
        """A list, tuple or dict literal, charged its structure (shared parts in full)."""
        budget = current_budget()
        budget.charge(estimates.structure(value, budget), f"a {type(value).__name__}")
        return value

    @jinja2.pass_eval_context
    def budgeted_concat(self, eval_ctx: EvalContext, items: list[Any]) -> str:
        """`a ~ b ~ …`, charged before the pieces are joined."""
        budget = current_budget()
        budget.charge(sum(estimates.measured(item, budget) for item in items), "'~'")
        return str(markup_join(items) if eval_ctx.autoescape else str_join(items))


def _built_size(value: Any, budget: Budget) -> int:
    """What a call built: a string's length, a container's structure (shared parts in full)."""
    if isinstance(value, _CONTAINERS):
        return estimates.structure(value, budget)
    return estimates.built_size(value)


def _charging(items: Iterator[Any], what: str) -> Iterator[Any]:
    """`items`, charging each list, tuple or dict it yields (a generator filter's output)."""
    for item in items:
        if isinstance(item, _CONTAINERS):
            budget = current_budget()
            budget.charge(estimates.structure(item, budget), what)
        yield item


@jinja2.pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Any:
    # Needing the evaluation context also stops Jinja from evaluating output at compile time.
    budget = current_budget()
    budget.charge(
        len(value) if type(value) is str else estimates.measured(value, budget), "the output"
    )
    return value


def _budgeted_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` counting a step per call and charging what it builds."""
    # Filters marked with `pass_context` and the like get that object first.
    skip = 1 if hasattr(function, "jinja_pass_arg") else 0
    estimate = estimates.FILTER_ESTIMATES.get(name)
    what = f"the filter '{name}'"

    picking = name in _PICKING_FILTERS

    @functools.wraps(function)
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.step()
        result: Any = _UNSET
        if estimate is not None:
            try:
                size, given, kwargs = estimate(budget, *args[skip:], **kwargs)
            except TypeError:
                pass  # the wrong arguments: the filter itself says so
            else:
                budget.charge(size, what)
                args = (*args[:skip], *given)
                result = function(*args, **kwargs)
        if result is _UNSET:
            result = function(*args, **kwargs)
            if not picking:
                budget.charge(_built_size(result, budget), what)
        if isinstance(result, Iterator) and not isinstance(result, _CONTAINERS):
            return _charging(result, what)
        return result

    return budgeted


_UNSET: Any = object()


def _budgeted_range(*args: int) -> range:
    numbers = safe_range(*args)
    current_budget().charge(len(numbers), "range()")
    return numbers


def _budgeted_lipsum(function: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(function)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        # A paragraph holds up to `max` words of up to 12 characters.
        current_budget().charge(
            estimates.as_count(n) * (estimates.as_count(max) * 13 + 20), "lipsum()"
        )
        return function(n, html, min, max)

    return lipsum


def make_environment(
    globals: Mapping[str, Any] | None = None,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> BudgetedSandbox:
    """A budgeted sandbox with a strict undefined, no autoescaping, and these extras."""
    env = BudgetedSandbox(
        undefined=SpecUndefined,
        autoescape=False,
        finalize=_finalize,
        optimized=False,
    )
    env.template_class = SpecTemplate
    env.globals.update(globals or {})
    env.globals["range"] = _budgeted_range
    env.globals["lipsum"] = _budgeted_lipsum(cast("Callable[..., str]", env.globals["lipsum"]))
    env.filters.update(filters or {})
    env.filters = {name: _budgeted_filter(name, function) for name, function in env.filters.items()}
    return env
