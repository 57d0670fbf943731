"""Request and response transforms of an HTTP spec: Jinja in a sandbox, JSON templates, JSONPath
and regular expressions.

Specs are untrusted input (they travel inside identifiers, files and databases), so:

- templates render in Jinja's immutable sandbox, with a strict undefined (a missing variable is an
  error, never an empty string) and bounds on `*` and `**` so one expression cannot eat the
  memory or the CPU;
- regular expressions run with the `regex` package's timeout, so a pattern that backtracks
  catastrophically fails with `ProcessingError` instead of hanging;
- every failure is a `ProcessingError` that names the pattern or template at fault.

jinja2, jsonpath-ng and regex are imported on first use, not by `import jib`.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jib._json import loads as load_json
from jib.errors import MissingDependencyError, ProcessingError

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "REGEX_TIMEOUT",
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

REGEX_TIMEOUT = 1.0
"""Seconds a response regex may run before it fails with `ProcessingError`."""

_MAX_REPEAT = 1_000_000
_MAX_EXPONENT = 1_000
_VARIABLE_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)$")


def now() -> _dt.datetime:
    """The current time in UTC, timezone-aware; available as `now()` in every template."""
    return _dt.datetime.now(_dt.timezone.utc)


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


# -- Jinja ---------------------------------------------------------------------------------------


def _from_json(text: Any) -> Any:
    if isinstance(text, (dict, list)):
        return text  # already parsed: response steps see JSON bodies parsed
    try:
        return load_json(text, what="fromjson: the text")
    except (TypeError, ValueError) as exc:
        raise ProcessingError(f"fromjson: not valid JSON: {truncate(str(text), 200)!r}") from exc


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    try:
        import jinja2
        from jinja2.exceptions import SecurityError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingDependencyError("jinja2", "http", "The HTTP generator") from exc

    class _BoundedSandbox(ImmutableSandboxedEnvironment):
        """The immutable sandbox, with `*` and `**` bounded so templates stay cheap."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(
            self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
        ) -> Any:
            if operator == "**":
                if isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
                    raise SecurityError(f"exponent {right} is larger than {_MAX_EXPONENT}")
                return left**right
            if operator == "*":
                for sized, count in ((left, right), (right, left)):
                    if (
                        isinstance(sized, (str, list, tuple))
                        and isinstance(count, int)
                        and len(sized) * count > _MAX_REPEAT
                    ):
                        raise SecurityError(f"repeating a value to over {_MAX_REPEAT} items")
                return left * right
            return super().call_binop(context, operator, left, right)

    env = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals["now"] = now
    env.filters["fromjson"] = _from_json
    return env


def compile_jinja(source: str) -> jinja2.Template:
    """Compile a template in the sandbox.

    Raises:
        ValueError: the template has a syntax error (pydantic turns it into a validation error
            that names the field).
    """
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid Jinja template {truncate(source, 100)!r}: {exc}") from exc


def render_jinja(template: jinja2.Template, variables: Mapping[str, Any], where: str) -> str:
    """Render a compiled template; failures become `ProcessingError` naming `where`.

    Raises:
        ProcessingError: a variable is missing, the sandbox blocked an operation, or the template
            raised.
    """
    import jinja2
    from jinja2.exceptions import SecurityError

    try:
        return template.render(variables)
    except SecurityError as exc:
        raise ProcessingError(f"{where}: template blocked by the sandbox: {exc}") from exc
    except jinja2.UndefinedError as exc:
        raise ProcessingError(f"{where}: missing template variable: {exc}") from exc
    except ProcessingError as exc:
        raise ProcessingError(f"{where}: {exc}") from exc
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
    """A parsed JSONPath expression applied to JSON text."""

    def __init__(self, pattern: str) -> None:
        """Parse `pattern`; raises `ValueError` when it is not a valid JSONPath."""
        try:
            from jsonpath_ng.ext.parser import parse
        except ImportError as exc:  # pragma: no cover - jsonpath-ng is a core dependency
            raise MissingDependencyError("jsonpath-ng", "http", "The HTTP generator") from exc
        self.pattern = pattern
        try:
            self._path = parse(pattern)
        except Exception as exc:
            raise ValueError(f"invalid JSONPath {pattern!r}: {exc}") from exc

    def find(self, data: Any) -> list[Any]:
        """Every value the expression matches in already-parsed data."""
        return [match.value for match in self._path.find(data)]

    def apply(self, text: str) -> str:
        """Extract from JSON `text`: one match gives that value, several a JSON list.

        A match that is not a string is written as JSON the way the seed's system writes it
        (`[1, 2]`, `{"a": 1}`).

        Raises:
            ProcessingError: the text is not JSON, or the expression matches nothing.
        """
        return match_text(self.extract(text))

    def extract(self, text: str) -> Any:
        """Like `apply`, but the matched value itself (the list of values for several matches).

        Raises:
            ProcessingError: the text is not JSON, or the expression matches nothing.
        """
        try:
            data = load_json(text, what=f"the response read by jsonpath '{self.pattern}'")
        except ValueError as exc:
            raise ProcessingError(
                f"jsonpath '{self.pattern}' needs a JSON response, got: {truncate(text, 200)!r}"
            ) from exc
        values = self.find(data)
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
    """Parse a JSONPath expression (raises `ValueError` when invalid)."""
    return CompiledJsonPath(pattern)


# -- regular expressions -------------------------------------------------------------------------


class CompiledRegex:
    """A compiled regular expression that searches with a timeout."""

    def __init__(self, pattern: str) -> None:
        """Compile `pattern`; raises `ValueError` when it is not a valid expression."""
        try:
            # Through importlib: the package ships no type stubs.
            regex: Any = importlib.import_module("regex")
        except ImportError as exc:  # pragma: no cover - regex comes with jib's dependencies
            raise MissingDependencyError("regex", "http", "A regex response transform") from exc
        self.pattern = pattern
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc

    def apply(self, text: str, timeout: float = REGEX_TIMEOUT) -> str:
        """The first group of the first match, or the whole match when there is no group.

        Raises:
            ProcessingError: nothing matched, or matching took longer than `timeout` seconds.
        """
        try:
            match = self._compiled.search(text, timeout=timeout, concurrent=True)
        except TimeoutError as exc:
            raise ProcessingError(
                f"regex '{self.pattern}' took longer than {timeout}s on a {len(text)}-character "
                "response (catastrophic backtracking?); simplify the pattern"
            ) from exc
        if match is None:
            raise ProcessingError(
                f"regex '{self.pattern}' matched nothing in the response: {truncate(text, 200)!r}"
            )
        if self._compiled.groups:
            group = match.group(1)
            return "" if group is None else str(group)
        return str(match.group(0))


def compile_regex(pattern: str) -> CompiledRegex:
    """Compile a regular expression (raises `ValueError` when invalid)."""
    return CompiledRegex(pattern)
