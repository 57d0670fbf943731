"""Request and response transforms of an HTTP spec: Jinja in a sandbox, JSON templates, JSONPath
and regular expressions.

Specs are untrusted input (they travel inside identifiers, files and databases), so:

- templates render in Jinja's immutable sandbox, with a strict undefined (a missing variable is an
  error, never an empty string), metered by a budget of time, steps and size (`_sandbox`,
  `_budget`); templates too large to compile quickly are refused;
- regular expressions (regex steps and JSONPath `=~`/`sub()`) are measured before they are
  compiled and run with a timeout taken from the budget (`_regex`, `_jsonpath`);
- every failure is a `ProcessingError` that names the pattern or template at fault, a
  `BudgetExceededError` when a budget ran out.

jinja2, jsonpath-ng and regex are imported on first use, not by `import jib`.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any

from jib._json import loads as load_json
from jib.errors import BudgetExceededError, MissingDependencyError, ProcessingError
from jib.generator.http._budget import RenderLimits, metered
from jib.generator.http._regex import CompiledRegex
from jib.generator.http._text import to_text, truncate

if TYPE_CHECKING:
    import jinja2

    from jib.generator.http._sandbox import BudgetedSandbox

__all__ = [
    "MAX_TEMPLATE_LENGTH",
    "MAX_TEMPLATE_TOKENS",
    "CompiledJsonPath",
    "CompiledRegex",
    "compile_jinja",
    "compile_jsonpath",
    "compile_regex",
    "fill_json_template",
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


def now() -> _dt.datetime:
    """The current time in UTC, timezone-aware; available as `now()` in every template."""
    return _dt.datetime.now(_dt.timezone.utc)


# -- Jinja ---------------------------------------------------------------------------------------


def _from_json(text: Any) -> Any:
    if isinstance(text, (dict, list)):
        return text  # already parsed: response steps see JSON bodies parsed
    try:
        return load_json(text, what="fromjson: the text")
    except (TypeError, ValueError) as exc:
        raise ProcessingError(f"fromjson: not valid JSON: {truncate(str(text), 200)!r}") from exc


@lru_cache(maxsize=1)
def _environment() -> BudgetedSandbox:
    try:
        from jib.generator.http._sandbox import make_environment
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingDependencyError("jinja2", "http", "The HTTP generator") from exc
    return make_environment(globals={"now": now}, filters={"fromjson": _from_json})


def compile_jinja(source: str) -> jinja2.Template:
    """Compile a template in the budgeted sandbox.

    Raises:
        ValueError: the template has a syntax error, or is too large or too deeply nested to
            compile quickly (pydantic turns it into a validation error that names the field).
    """
    import jinja2

    if len(source) > MAX_TEMPLATE_LENGTH:
        raise ValueError(
            f"the template is {len(source):,} characters long; the limit is {MAX_TEMPLATE_LENGTH:,}"
        )
    environment = _environment()
    try:
        # Every token takes a character at least, so short templates need no counting.
        if len(source) > MAX_TEMPLATE_TOKENS:
            tokens = environment.lex(source)
            if next(islice(tokens, MAX_TEMPLATE_TOKENS, None), None) is not None:
                raise ValueError(
                    f"the template {truncate(source, 100)!r} holds more than "
                    f"{MAX_TEMPLATE_TOKENS:,} tokens (names, operators, literals, text runs); "
                    "split it or simplify it"
                )
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid Jinja template {truncate(source, 100)!r}: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(
            f"invalid Jinja template {truncate(source, 100)!r}: it nests too deeply"
        ) from exc


def render_jinja(
    template: jinja2.Template,
    variables: Mapping[str, Any],
    where: str,
    limits: RenderLimits | None = None,
) -> str:
    """Render a compiled template; failures become `ProcessingError` naming `where`.

    The render runs under the active budget, or a new one from `limits` (the defaults when
    `None`).

    Raises:
        BudgetExceededError: the render ran out of time, steps or size.
        ProcessingError: a variable is missing, the sandbox blocked an operation, or the template
            raised.
    """
    import jinja2
    from jinja2.exceptions import SecurityError

    try:
        with metered(limits) as budget:
            text = template.render(variables)
            budget.check_time()
            return text
    except BudgetExceededError as exc:
        raise BudgetExceededError(f"{where}: template blocked by the sandbox: {exc}") from exc
    except SecurityError as exc:
        raise ProcessingError(f"{where}: template blocked by the sandbox: {exc}") from exc
    except jinja2.UndefinedError as exc:
        raise ProcessingError(f"{where}: missing template variable: {exc}") from exc
    except ProcessingError as exc:
        raise ProcessingError(f"{where}: {exc}") from exc
    except RecursionError as exc:
        raise ProcessingError(f"{where}: template failed: its calls nest too deeply") from exc
    except MemoryError as exc:
        raise BudgetExceededError(
            f"{where}: template blocked by the sandbox: out of memory"
        ) from exc
    except Exception as exc:
        raise ProcessingError(f"{where}: template failed: {type(exc).__name__}: {exc}") from exc


# -- JSON templates ------------------------------------------------------------------------------


def fill_json_template(
    template: Any,
    variables: Mapping[str, Any],
    render: Callable[[str], str],
) -> Any:
    """Fill a JSON template object from `variables`, keeping value types.

    A string that is exactly `"$name"` or `"$a.b.c"` is replaced by that value (a list stays a
    list, a number a number); any other string holding `{{` or `{%` is rendered as Jinja through
    `render`; everything else is kept. Dict keys are kept as they are.

    Raises:
        ProcessingError: a `$` reference names a variable that does not exist.
    """
    if isinstance(template, Mapping):
        return {
            key: fill_json_template(value, variables, render) for key, value in template.items()
        }
    if isinstance(template, list):
        return [fill_json_template(item, variables, render) for item in template]
    if isinstance(template, str):
        match = _VARIABLE_RE.match(template)
        if match:
            return _lookup(variables, match.group(1))
        if "{{" in template or "{%" in template:
            return render(template)
    return template


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
    """A parsed JSONPath expression applied to JSON text, its regexes and products bounded."""

    def __init__(self, pattern: str) -> None:
        """Parse `pattern`; raises `ValueError` when it is not a valid, affordable JSONPath."""
        try:
            from jsonpath_ng.ext.parser import parse

            from jib.generator.http._jsonpath import MAX_JSONPATH_LENGTH, bounded, regexes
        except ImportError as exc:  # pragma: no cover - jsonpath-ng is a core dependency
            raise MissingDependencyError("jsonpath-ng", "http", "The HTTP generator") from exc
        self.pattern = pattern
        if len(pattern) > MAX_JSONPATH_LENGTH:
            raise ValueError(
                f"the JSONPath is {len(pattern):,} characters long; the limit is "
                f"{MAX_JSONPATH_LENGTH:,}"
            )
        try:
            parsed = parse(pattern)
        except RecursionError as exc:
            raise ValueError(
                f"invalid JSONPath {truncate(pattern, 100)!r}: it nests too deeply"
            ) from exc
        except Exception as exc:
            raise ValueError(f"invalid JSONPath {pattern!r}: {exc}") from exc
        try:
            self._path = bounded(parsed)
        except RecursionError as exc:
            raise ValueError(
                f"invalid JSONPath {truncate(pattern, 100)!r}: it nests too deeply"
            ) from exc
        except ValueError as exc:
            raise ValueError(f"JSONPath {pattern!r}: {exc}") from exc
        self.regexes = regexes(self._path)
        """The regexes the path matches with (`=~` filters, `sub()` calls)."""

    def find(self, data: Any, limits: RenderLimits | None = None) -> list[Any]:
        """Every value the expression matches in already-parsed data.

        Runs under the active budget, or a new one from `limits` (the defaults when `None`).

        Raises:
            BudgetExceededError: a regex filter or a product ran out of its budget.
            ProcessingError: the data nests too deeply to walk.
        """
        try:
            with metered(limits):
                return [match.value for match in self._path.find(data)]
        except BudgetExceededError as exc:
            raise BudgetExceededError(f"jsonpath '{self.pattern}': {exc}") from exc
        except RecursionError as exc:
            raise ProcessingError(
                f"jsonpath '{self.pattern}': the data nests too deeply to search"
            ) from exc

    def apply(self, text: str, limits: RenderLimits | None = None) -> str:
        """Extract from JSON `text`: one match gives that value, several a JSON list.

        A match that is not a string is written as JSON the way the seed's system writes it
        (`[1, 2]`, `{"a": 1}`).

        Raises:
            ProcessingError: the text is not JSON, or the expression matches nothing.
            BudgetExceededError: a regex filter or a product ran out of its budget.
        """
        return match_text(self.extract(text, limits))

    def extract(self, text: str, limits: RenderLimits | None = None) -> Any:
        """Like `apply`, but the matched value itself (the list of values for several matches).

        Raises:
            ProcessingError: the text is not JSON, or the expression matches nothing.
            BudgetExceededError: a regex filter or a product ran out of its budget.
        """
        try:
            data = load_json(text, what=f"the response read by jsonpath '{self.pattern}'")
        except ValueError as exc:
            raise ProcessingError(
                f"jsonpath '{self.pattern}' needs a JSON response, got: {truncate(text, 200)!r}"
            ) from exc
        values = self.find(data, limits)
        if not values:
            raise ProcessingError(
                f"jsonpath '{self.pattern}' matched nothing in the response: "
                f"{truncate(text, 200)!r}"
            )
        return values[0] if len(values) == 1 else values


def match_text(value: Any) -> str:
    """What a `jsonpath` step writes for the value it matched: a string as it is, anything
    else as JSON the way the seed's system writes it (`[1, 2]`, `{"a": 1}`)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_json_container(text: str) -> Any:
    """`text` parsed when it is a JSON object or array, else `text` itself.

    What a `jinja` response step sees as `result` after a step that wrote text: a body such as
    `{"reply": "hi"}` can be read as `{{ result.reply }}`. Other JSON (`"hi"`, `42`, `true`)
    stays text, so `{{ result }}` renders what the previous step wrote.
    """
    if text.lstrip()[:1] not in ("{", "["):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def compile_jsonpath(pattern: str) -> CompiledJsonPath:
    """Parse a JSONPath expression (raises `ValueError` when invalid or too expensive)."""
    return CompiledJsonPath(pattern)


# -- regular expressions -------------------------------------------------------------------------


def compile_regex(pattern: str) -> CompiledRegex:
    """Check and compile a regular expression (raises `ValueError` when invalid or too
    expensive to compile)."""
    return CompiledRegex(pattern)
