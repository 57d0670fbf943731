"""Request and response transforms of an HTTP spec: Jinja in a sandbox, JSON templates, JSONPath
and regular expressions.

Specs are untrusted input (they travel inside identifiers, files and databases), so:

- templates render in Jinja's immutable sandbox, with a strict undefined (a missing variable is an
  error, never an empty string), metered by a budget of time, steps and size (`_sandbox`,
  `_budget`); templates too large to compile quickly are refused;
- regular expressions (regex steps and JSONPath `=~`/`sub()`) are measured before they are
  compiled and run with a timeout taken from the budget (`_regex`, `_jsonpath`); JSONPath counts
  what it visits and selects, and what a step writes is charged before it is written;
- every failure is a `ProcessingError` that names the step and the kind of failure, a
  `BudgetExceededError` when a budget ran out, a `CompileError` when a template or pattern
  cannot be compiled.

Errors carry no data: not a rendered value, not the name of a missing key the template computed,
not a piece of the response (specs are data, and a template can compute anything from the api
key: `{{ state[api_key|reverse] }}`). A missing name is quoted only when the template wrote it; of
the other exceptions a template raises, only the type and the template line are reported, plus
the message of a `TypeError`-like one with any quoted value masked (`_text.scrubbed`). The
exception chained as the cause is a stand-in holding the same text.

jinja2, jsonpath-ng and regex are imported on first use, not by `import jib`.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from jib._json import loads as load_json
from jib._secrets import RedactedError
from jib.errors import BudgetExceededError, MissingDependencyError, ProcessingError
from jib.generator.http._budget import HELD_VALUE_STEPS, RenderLimits, current_budget, metered
from jib.generator.http._regex import CompiledRegex
from jib.generator.http._text import scrubbed, text_size, to_text, truncate

if TYPE_CHECKING:
    import jinja2

    from jib.generator.http._sandbox import BudgetedSandbox

__all__ = [
    "MAX_TEMPLATE_LENGTH",
    "MAX_TEMPLATE_TOKENS",
    "CompileError",
    "CompiledJsonPath",
    "CompiledRegex",
    "NotJSONError",
    "compile_jinja",
    "compile_jsonpath",
    "compile_regex",
    "fill_json_template",
    "json_reference",
    "load_budgeted_json",
    "match_text",
    "now",
    "parse_json_container",
    "render_jinja",
    "to_text",
    "truncate",
]

MAX_TEMPLATE_LENGTH = 100_000
"""The longest template accepted, in characters."""
MAX_TEMPLATE_TOKENS = 10_000
"""The most Jinja tokens (names, operators, literals, text runs) a template may hold: compiling
takes tens of microseconds per token."""

_VARIABLE_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)$")
# Exceptions whose messages describe types and operations, not values: shown, scrubbed.
_DESCRIBED = (TypeError, ZeroDivisionError, IndexError, OverflowError)


class NotJSONError(ProcessingError):
    """A `jsonpath` step was given text that is not JSON (the message says where it stops
    being JSON, not what it holds). From the first step, the response body itself was not
    JSON: a cut or garbled answer."""


class CompileError(ProcessingError, ValueError):
    """A template, JSONPath or regex of a spec cannot be compiled (invalid, or too costly).

    A `ValueError` too, so a spec validated by pydantic reports it as a validation error that
    names the field.
    """


def now() -> _dt.datetime:
    """The current time in UTC, timezone-aware; available as `now()` in every template."""
    return _dt.datetime.now(_dt.timezone.utc)


# -- Jinja ---------------------------------------------------------------------------------------


def _from_json(text: Any) -> Any:
    if isinstance(text, (dict, list)):
        return text  # already parsed: response steps see JSON bodies parsed
    if not isinstance(text, str):
        raise ProcessingError(f"fromjson: needs text, not {type(text).__name__}")
    try:
        return load_budgeted_json(text, "fromjson: the text")
    except ValueError as exc:
        failure = _not_json(exc)
    raise ProcessingError(f"fromjson: not valid JSON ({failure})")


@lru_cache(maxsize=1)
def _environment() -> BudgetedSandbox:
    try:
        from jib.generator.http._sandbox import make_environment
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingDependencyError("jinja2", None, "The HTTP generator") from exc
    return make_environment(globals={"now": now}, filters={"fromjson": _from_json})


def compile_jinja(source: str) -> jinja2.Template:
    """Compile a template in the budgeted sandbox.

    Raises:
        CompileError: the template has a syntax error, or is too large or too deeply nested to
            compile (pydantic turns it into a validation error that names the field).
    """
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise CompileError(
            f"the template is {len(source):,} characters long; the limit is {MAX_TEMPLATE_LENGTH:,}"
        )
    environment = _environment()
    failure: str | None = None
    try:
        return _compile(environment, source)
    except CompileError:
        raise
    except Exception as exc:
        failure = _compile_failure(exc)
    # Raised outside the `except`: Python's own exception says no more than this.
    raise CompileError(f"invalid Jinja template {truncate(source, 100)!r}: {failure}")


def _compile(environment: BudgetedSandbox, source: str) -> jinja2.Template:
    from jib.generator.http._sandbox import SpecTemplate, read_names, written_names

    # Every token takes a character at least, so short templates need no counting.
    if len(source) > MAX_TEMPLATE_TOKENS:
        tokens = environment.lex(source)
        if next(islice(tokens, MAX_TEMPLATE_TOKENS, None), None) is not None:
            raise CompileError(
                f"the template {truncate(source, 100)!r} holds more than "
                f"{MAX_TEMPLATE_TOKENS:,} tokens (names, operators, literals, text runs); "
                "split it or simplify it"
            )
    parsed = environment.parse(source)
    names = written_names(parsed)
    template = environment.from_string(parsed)
    cast(SpecTemplate, template).source_names = names
    cast(SpecTemplate, template).read_names = read_names(parsed)
    return template


def _compile_failure(exc: Exception) -> str:
    """What went wrong compiling, in words (the template itself is data: no other text)."""
    import jinja2

    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.message} (line {exc.lineno})" if exc.message else f"line {exc.lineno}"
    if isinstance(exc, SyntaxError):
        # Python's own limits on the code a template compiles to: 20 nested loops, 100 levels
        # of indentation.
        return (
            "it nests blocks too deeply to compile (Python allows about 20 nested "
            "{% for %} loops and 100 levels of blocks)"
        )
    if isinstance(exc, (RecursionError, MemoryError)):
        return "it nests too deeply or is too large to compile"
    if isinstance(exc, ValueError) and "digits" in str(exc):
        return "a number literal is too long"
    return f"it cannot be compiled ({type(exc).__name__})"


def render_jinja(
    template: jinja2.Template,
    variables: Mapping[str, Any],
    where: str,
    limits: RenderLimits | None = None,
) -> str:
    """Render a compiled template; failures become `ProcessingError` naming `where`.

    The render runs under the active budget, or a new one from `limits` (the defaults when
    `None`). Error messages carry no data (see the module docstring).

    Raises:
        BudgetExceededError: the render ran out of time, steps or size.
        ProcessingError: a variable is missing, the sandbox blocked an operation, or the template
            raised.
    """
    from jib.generator.http._sandbox import SOURCE_NAMES

    names: frozenset[object] = getattr(template, "source_names", frozenset())
    token = SOURCE_NAMES.set(names)
    try:
        with metered(limits) as budget:
            text = template.render(variables)
            budget.check_time()
            return text
    except Exception as exc:
        failure: BaseException = exc
    finally:
        SOURCE_NAMES.reset(token)
    # Raised outside the `except`: the original (its message may quote data) is not chained,
    # nor its traceback, whose frames hold what the template built (an error is stored with its
    # chat). The message names the template's line.
    error = _render_error(failure, where, names)
    cause = RedactedError(_type_name(failure), str(error))
    del failure
    raise error from cause


def _render_error(exc: BaseException, where: str, names: frozenset[object]) -> ProcessingError:
    import jinja2
    from jinja2.exceptions import SecurityError

    blocked = f"{where}: template blocked by the sandbox"
    if isinstance(exc, BudgetExceededError):
        return BudgetExceededError(f"{blocked}: {exc}")
    if isinstance(exc, MemoryError):
        return BudgetExceededError(f"{blocked}: out of memory")
    if isinstance(exc, SecurityError):
        return ProcessingError(f"{blocked}: {scrubbed(str(exc), names)}")
    if isinstance(exc, jinja2.UndefinedError):
        # `SpecUndefined` quotes only names the template wrote.
        return ProcessingError(f"{where}: missing template variable: {exc}")
    if isinstance(exc, ProcessingError):
        return ProcessingError(f"{where}: {exc}")
    if isinstance(exc, RecursionError):
        return ProcessingError(f"{where}: template failed: its calls nest too deeply")
    failed = f"{where}: template failed{_template_line(exc)}: {type(exc).__name__}"
    if isinstance(exc, (*_DESCRIBED, jinja2.TemplateRuntimeError)):
        return ProcessingError(f"{failed}: {scrubbed(str(exc), names)}")
    return ProcessingError(f"{failed} (its message is not shown: it may quote the data)")


def _template_line(exc: BaseException) -> str:
    """` at line N` of the template, from the frames Jinja adds to tracebacks ('' if none)."""
    line = None
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return "" if line is None else f" at line {line}"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# -- JSON templates ------------------------------------------------------------------------------


def fill_json_template(
    template: Any,
    variables: Mapping[str, Any],
    render: Callable[[str], str],
    *,
    optional: frozenset[str] = frozenset(),
) -> Any:
    """Fill a JSON template object from `variables`, keeping value types.

    A string that is exactly `"$name"` or `"$a.b.c"` is replaced by that value (a list stays a
    list, a number a number); any other string holding `{{` or `{%` is rendered as Jinja through
    `render`; everything else is kept. Dict keys are kept as they are. An object entry whose
    value is exactly `"$name"` for a name in `optional` is left out when that variable is
    `None` (`"tools": "$tools"` sends no `tools` key when there are none).

    Raises:
        ProcessingError: a `$` reference names a variable that does not exist.
    """
    if isinstance(template, Mapping):
        filled = {}
        for key, value in template.items():
            if (
                isinstance(value, str)
                and value[1:] in optional
                and value[:1] == "$"
                and variables.get(value[1:]) is None
            ):
                continue
            filled[key] = fill_json_template(value, variables, render, optional=optional)
        return filled
    if isinstance(template, list):
        return [fill_json_template(item, variables, render, optional=optional) for item in template]
    if isinstance(template, str):
        match = _VARIABLE_RE.match(template)
        if match:
            return _lookup(variables, match.group(1))
        if "{{" in template or "{%" in template:
            return render(template)
    return template


def json_reference(text: str) -> str | None:
    """The variable a JSON template string refers to (`"$messages.0"` → `messages`), or `None`
    when it is not a `$` reference."""
    match = _VARIABLE_RE.match(text)
    return match.group(1).split(".", 1)[0] if match else None


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    value: Any = variables
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and part.isdigit()
            and int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            raise ProcessingError(
                f"json template: variable '${path}' not found ('{'.'.join(walked)}' is missing); "
                f"available: {', '.join(sorted(variables))}"
            )
    return value


# -- JSONPath ------------------------------------------------------------------------------------


class CompiledJsonPath:
    """A parsed JSONPath expression applied to JSON text, within the active budget."""

    def __init__(self, pattern: str) -> None:
        """Parse `pattern`.

        Raises:
            CompileError: it is not a valid, affordable JSONPath (a `ValueError` too).
        """
        try:
            from jsonpath_ng.ext.parser import parse

            from jib.generator.http._jsonpath import MAX_JSONPATH_LENGTH, bounded, regexes
        except ImportError as exc:  # pragma: no cover - jsonpath-ng is a core dependency
            raise MissingDependencyError("jsonpath-ng", None, "The HTTP generator") from exc
        self.pattern = pattern
        if len(pattern) > MAX_JSONPATH_LENGTH:
            raise CompileError(
                f"the JSONPath is {len(pattern):,} characters long; the limit is "
                f"{MAX_JSONPATH_LENGTH:,}"
            )
        shown = truncate(pattern, 100)
        failure: str | None = None
        try:
            self._path = bounded(parse(pattern))
        except CompileError:
            raise
        except (RecursionError, MemoryError):
            failure = f"invalid JSONPath {shown!r}: it nests too deeply"
        except ValueError as exc:  # a regex inside it (`_regex` says which and why)
            failure = f"JSONPath {shown!r}: {exc}"
        except Exception as exc:
            failure = f"invalid JSONPath {shown!r}: {truncate(str(exc), 200)}"
        if failure is not None:
            raise CompileError(failure)
        self.regexes = regexes(self._path)
        """The regexes the path matches with (`=~` filters, `sub()` calls)."""

    def find(self, data: Any, limits: RenderLimits | None = None) -> list[Any]:
        """Every value the expression matches in already-parsed data.

        Runs under the active budget, or a new one from `limits` (the defaults when `None`):
        every value visited or selected counts (see `_jsonpath`).

        Raises:
            BudgetExceededError: the path visited or selected too much, or a regex filter or a
                product ran out of its budget.
            ProcessingError: the data nests too deeply to walk.
        """
        return self._find_taking([data], limits)

    def _find_taking(self, box: list[Any], limits: RenderLimits | None) -> list[Any]:
        """`find` on the data in `box`, taken out of it: a failure's traceback keeps the frames
        it passed through, and must not keep a large parsed body alive with them."""
        data = box.pop()
        failure: ProcessingError
        try:
            with metered(limits):
                return [match.value for match in self._path.find(data)]
        except BudgetExceededError as exc:
            # Not chained: its traceback holds every value the walk had selected.
            failure = BudgetExceededError(f"jsonpath '{self.pattern}': {exc}")
        except RecursionError:
            failure = ProcessingError(
                f"jsonpath '{self.pattern}': the data nests too deeply to search"
            )
        del data
        raise failure

    def apply(self, text: str, limits: RenderLimits | None = None) -> str:
        """Extract from JSON `text`: one match gives that value, several a JSON list.

        A match that is not a string is written as JSON the way the seed's system writes it
        (`[1, 2]`, `{"a": 1}`); what is written is charged to the budget first.

        Raises:
            ProcessingError: the text is not JSON, or the expression matches nothing.
            BudgetExceededError: the path or what it writes ran out of the budget.
        """
        with metered(limits):
            return match_text(self.extract(text), f"jsonpath '{self.pattern}'")

    def extract(self, text: str, limits: RenderLimits | None = None) -> Any:
        """Like `apply`, but the matched value itself (the list of values for several matches).

        Parsing the text is charged first (`load_budgeted_json`). Errors describe the text
        (its length, where it stops being JSON), never quote it.

        Raises:
            NotJSONError: the text is not JSON.
            ProcessingError: the expression matches nothing.
            BudgetExceededError: parsing or the path ran out of its budget.
        """
        with metered(limits):
            box = [self._load(text)]
            kind = _kind_of(box[0])
            values = self._find_taking(box, None)
        if not values:
            raise ProcessingError(
                f"jsonpath '{self.pattern}' matched nothing in the response ({kind}, "
                f"{_length(text)})"
            )
        return values[0] if len(values) == 1 else values

    def find_in(self, text: str, limits: RenderLimits | None = None) -> list[Any]:
        """Every value the expression matches in JSON `text` (an empty list for none), parsing
        charged first as `extract` does.

        Raises:
            NotJSONError: the text is not JSON.
            BudgetExceededError: parsing or the path ran out of its budget.
        """
        with metered(limits):
            return self._find_taking([self._load(text)], None)

    def _load(self, text: str) -> Any:
        failure: ProcessingError
        try:
            return load_budgeted_json(text, f"the response read by jsonpath '{self.pattern}'")
        except BudgetExceededError as exc:
            failure = BudgetExceededError(f"jsonpath '{self.pattern}': {exc}")
        except ValueError as exc:
            failure = NotJSONError(
                f"jsonpath '{self.pattern}' needs a JSON response; the response "
                f"({_length(text)}) is not JSON: {_not_json(exc)}"
            )
        raise failure


def load_budgeted_json(text: str, what: str) -> Any:
    """Parse JSON `text` read from data, its parsing charged to the active budget first.

    Every array and object a body holds is a Python object of about 100 to 250 bytes once
    parsed, so each `{` or `[` counts `HELD_VALUE_STEPS` steps (`RenderLimits.max_steps`)
    before parsing: a 10 MB body of ten-character objects is refused instead of taking
    hundreds of megabytes. Scalars are not counted (numbers and strings cost about what their
    text does).

    Raises:
        BudgetExceededError: the body holds too many arrays and objects.
        ProcessingError: it nests deeper than `jib._json.MAX_DEPTH`.
        ValueError: it is not JSON (`json.JSONDecodeError`, or a number too long to read).
    """
    containers = text.count("{") + text.count("[")
    if containers:
        budget = current_budget()
        try:
            budget.step(HELD_VALUE_STEPS * containers)
        except BudgetExceededError as exc:
            raise BudgetExceededError(
                f"reading {what} ({containers:,} arrays and objects): {exc}"
            ) from None
    return load_json(text, what=what)


def _not_json(exc: ValueError) -> str:
    """Where and why a text is not JSON, without quoting it."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if "digits" in str(exc):
        return "a number in it has too many digits"
    return type(exc).__name__


def _length(text: str) -> str:
    return "1 character" if len(text) == 1 else f"{len(text):,} characters"


def _kind_of(data: Any) -> str:
    if isinstance(data, dict):
        return "a JSON object"
    if isinstance(data, list):
        return "a JSON array"
    return "a JSON value"


def match_text(value: Any, what: str = "a jsonpath step") -> str:
    """What a `jsonpath` step writes for the value it matched: a string as it is, anything
    else as JSON the way the seed's system writes it (`[1, 2]`, `{"a": 1}`).

    The size is charged to the active budget before the JSON is written.
    """
    if isinstance(value, str):
        return value
    budget = current_budget()
    limit = budget.limits.max_size - budget.size
    budget.charge(text_size(value, limit, budget.check_time), f"{what} writing its match")
    return json.dumps(value, ensure_ascii=False)


def parse_json_container(text: str) -> Any:
    """`text` parsed when it is a JSON object or array, else `text` itself.

    What a `jinja` response step sees as `result` after a step that wrote text: a body such as
    `{"reply": "hi"}` can be read as `{{ result.reply }}`. Other JSON (`"hi"`, `42`, `true`)
    stays text, so `{{ result }}` renders what the previous step wrote.
    """
    if text.lstrip()[:1] not in ("{", "["):
        return text
    try:
        return load_budgeted_json(text, "the text a jinja step reads")
    except (ValueError, ProcessingError) as exc:
        if isinstance(exc, BudgetExceededError):
            raise
        return text


def compile_jsonpath(pattern: str) -> CompiledJsonPath:
    """Parse a JSONPath expression (raises `CompileError` when invalid or too expensive)."""
    return CompiledJsonPath(pattern)


# -- regular expressions -------------------------------------------------------------------------


def compile_regex(pattern: str) -> CompiledRegex:
    """Check and compile a regular expression (raises `CompileError` when invalid or too
    expensive to compile)."""
    try:
        return CompiledRegex(pattern)
    except CompileError:
        raise
    except ValueError as exc:
        failure = str(exc)
    raise CompileError(failure)
