"""Specs are data: every template, regex and JSONPath they hold runs within a budget.

Each reproducer of issue 12 §1 ends in a clear jib error within 2 s of CPU time and 200 MB,
through the Python API, through `get_generator(identifier)` and through the CLI; the budget comes
from the user's code (`HTTPGenerator.render_limits`), a request's timeout lowers it, and neither
a spec nor an identifier can raise it. Time is measured as CPU time (a loaded machine slows the
wall clock, not the work), and what stops a runaway is asserted from the error it reports.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import jib
from jib.errors import BudgetExceededError, InvalidGeneratorError, ProcessingError
from jib.generator.http import HTTPGenerator, HTTPSpec, RenderLimits, RequestTransformContext
from tests.cli.conftest import Result, isolated_env, jib_command

# Nothing listens there: every failure below happens before a request would be sent.
URL = "http://127.0.0.1:9/"
SECONDS = 2.0
MEGABYTES = 200

NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
MACRO_BOMB = (
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
)
TIME_BUDGET = (
    "took longer than its time budget of 1s (RenderLimits.seconds, lowered by the request timeout)"
)
SIZE_LIMIT = "the limit is 10,000,000 (RenderLimits.max_size)"
STEPS_LIMIT = "more than 1,000,000 loop iterations and calls (RenderLimits.max_steps)"
# Which runs out first depends on the machine's speed.
TIME_OR_STEPS = (TIME_BUDGET, STEPS_LIMIT)

REPRODUCERS = [
    pytest.param(NESTED_LOOPS, TIME_OR_STEPS, id="nested-loops"),
    pytest.param(MACRO_BOMB, TIME_OR_STEPS, id="macro-twice-per-level"),
    pytest.param(
        "{{ ((10**1000)**1000)**1000 }}",
        "'**' would make a number of about 3,300,000 bits; the limit is 65,536",
        id="power-tower",
    ),
    pytest.param(
        "{{ 'x'|center(500000000) }}",
        f"the filter 'center' would build about 500,000,000 characters or items; {SIZE_LIMIT}",
        id="center",
    ),
    pytest.param(
        "{{ '%0500000000d' % 1 }}",
        f"'%' formatting would build about 500,000,000 characters or items; {SIZE_LIMIT}",
        id="percent-width",
    ),
    pytest.param(
        "{{ '{:>500000000}'.format('x') }}",
        "str.format() would build about 500,000,000 more (about 500,000,000 in all) characters "
        f"or items; {SIZE_LIMIT}",
        id="format-width",
    ),
]


@dataclass
class Measured:
    """What a bounded call did: the exception it raised, its CPU time, its peak allocation."""

    error: BaseException | None
    cpu_seconds: float
    megabytes: float

    def within_budget(self) -> bool:
        return self.cpu_seconds < SECONDS and self.megabytes < MEGABYTES


@pytest.fixture(autouse=True, scope="module")
def _warm() -> None:
    """Import and build what every test uses, so no test measures first-use imports."""
    HTTPSpec.model_validate(body_spec("{{ content }}")).make_request_body(
        RequestTransformContext(content="hi")
    )
    HTTPSpec.model_validate(response_spec("jsonpath", "$[?(@.a =~ 'b')]"))
    jib.get_generator(identifier(response_spec("regex", "a")))


def measure(call: Callable[[], Any]) -> Measured:
    before = _resident_megabytes()
    start = time.process_time()  # every thread of the process: regexes finish in workers
    error: BaseException | None = None
    try:
        call()
    except Exception as exc:
        error = exc
    seconds = time.process_time() - start
    # The process's peak so far, above what it held before: an upper bound on what the call
    # added (tracemalloc would be exact, but slows everything it watches).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Measured(error, seconds, max(peak - before, 0.0))


def _resident_megabytes() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def body_spec(template: str) -> dict[str, Any]:
    return {"request": {"url": URL, "transforms": [{"type": "jinja", "pattern": template}]}}


def response_spec(kind: str, pattern: str) -> dict[str, Any]:
    return {
        "request": {"url": URL},
        "response": {"transforms": [{"type": kind, "pattern": pattern}]},
    }


def identifier(spec: dict[str, Any], extra: str = "") -> str:
    text = yaml.safe_dump(spec)
    encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return f"http!m,spec={encoded}{extra}"


def render(spec: dict[str, Any], limits: RenderLimits | None = None) -> str | None:
    return HTTPSpec.model_validate(spec).make_request_body(
        RequestTransformContext(content="hi"), limits
    )


# -- templates: the Python API -------------------------------------------------------------------


def expected(messages: str | tuple[str, ...]) -> set[str]:
    prefix = "request.transforms[0] (jinja): template blocked by the sandbox: "
    return {
        prefix + message for message in ((messages,) if isinstance(messages, str) else messages)
    }


@pytest.mark.parametrize(("template", "messages"), REPRODUCERS)
def test_template_reproducer_ends_in_a_budget_error(
    template: str, messages: str | tuple[str, ...]
) -> None:
    result = measure(lambda: render(body_spec(template)))
    assert isinstance(result.error, BudgetExceededError)
    assert str(result.error) in expected(messages)
    assert result.within_budget(), result


@pytest.mark.parametrize(("template", "messages"), REPRODUCERS)
def test_template_reproducer_from_an_identifier_ends_in_a_budget_error(
    template: str, messages: str | tuple[str, ...]
) -> None:
    def build() -> None:
        generator = jib.get_generator(identifier(body_spec(template)))
        assert isinstance(generator, HTTPGenerator) and generator.spec is not None
        generator.spec.build_request(RequestTransformContext(content="hi"))

    result = measure(build)
    assert isinstance(result.error, BudgetExceededError)
    assert str(result.error) in expected(messages)
    assert result.within_budget(), result


def test_budget_errors_are_processing_errors() -> None:
    assert issubclass(BudgetExceededError, ProcessingError)


def test_loop_iterations_and_calls_are_counted_as_steps() -> None:
    template = "{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}"
    with pytest.raises(BudgetExceededError) as caught:
        render(body_spec(template), RenderLimits(max_steps=1000))
    assert str(caught.value) == (
        "request.transforms[0] (jinja): template blocked by the sandbox: more than 1,000 loop "
        "iterations and calls (RenderLimits.max_steps)"
    )
    calls = "{% macro f() %}{% endmacro %}{% for a in range(10) %}{{ f() }}{% endfor %}"
    with pytest.raises(BudgetExceededError, match="more than 15 loop iterations"):
        render(body_spec(calls), RenderLimits(max_steps=15))


def test_text_printed_by_loops_counts_towards_the_size() -> None:
    template = "{% for a in range(1000) %}0123456789{% endfor %}"
    assert render(body_spec(template), RenderLimits(max_size=20_000)) == "0123456789" * 1000
    with pytest.raises(BudgetExceededError, match=r"a loop's text would build 10 more"):
        render(body_spec(template), RenderLimits(max_size=5_000))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% set s = 'x' * 5000000 %}{{ [s, s, s]|join(s) }}", "the filter 'join' would build"),
        ("{% set s = 'x' * 5000000 %}{{ [s] * 1000 }}", "'*' would build"),
        ("{% set s = 'x' * 1000000 %}{{ s.replace('x', s) }}", "replace() would build"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "'~' would build",
        ),
        ("{{ lipsum(500000000) }}", "lipsum() would build"),
        ("{{ (10).to_bytes(500000000, 'big') }}", "to_bytes() would build"),
        ("{{ range(3)|slice(500000000)|list }}", "the filter 'slice' would build"),
        ("{{ '{:{w}}'.format('x', w=500000000) }}", "str.format() would build"),
        ("{{ '%*d' % (500000000, 1) }}", "'%' formatting would build"),
        ("{{ range(100000)|map('center', 5000)|join }}", "the filter 'center' would build"),
        ("{% filter center(500000000) %}x{% endfilter %}", "the filter 'center' would build"),
        ("{{ 1.5|round(100000000, 'floor') }}", "round() to about 100,000,000 digits"),
    ],
)
def test_other_ways_to_build_large_values_are_refused_before_building(
    template: str, message: str
) -> None:
    result = measure(lambda: render(body_spec(template)))
    assert isinstance(result.error, BudgetExceededError)
    assert message in str(result.error)
    assert result.within_budget(), result


def test_deep_recursion_is_a_processing_error() -> None:
    with pytest.raises(ProcessingError, match="template failed: its calls nest too deeply"):
        render(body_spec("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"))


def test_ordinary_templates_render_as_before() -> None:
    template = (
        "{% macro line(m) %}{{ m.role|upper }}: {{ m.content ~ '!' }}{% endmacro %}"
        "{% for m in messages %}{{ line(m) }}|{{ loop.index }}/{{ loop.length }}\n{% endfor %}"
        "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%05d' % 3 }} {{ '{:>4}'.format('x') }} "
        "{{ range(4)|join(',') }} {{ messages|map(attribute='role')|join('+') }} "
        "{{ content|center(6)|tojson }} {{ [[1, [2]], 3]|tojson(indent=1)|length }}"
        "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
        "{% endfor %} {{ ns.n }}"
        "{% for x in [1, [2, [3]]] recursive %}{{ loop(x) if x is iterable else x }}{% endfor %}"
    )
    spec = HTTPSpec.model_validate(body_spec(template))
    context = RequestTransformContext.from_messages(
        [jib.Message("system", "be brief"), jib.Message("user", "hi")]
    )
    assert spec.make_request_body(context) == (
        "SYSTEM: be brief!|1/2\nUSER: hi!|2/2\n"
        'ababab 1024 00003    x 0,1,2,3 system+user "  hi  " 31 10123'
    )


def test_the_user_can_raise_the_limits_in_code() -> None:
    template = "{{ 'x'|center(20000000)|length }}"
    with pytest.raises(BudgetExceededError):
        render(body_spec(template))
    assert render(body_spec(template), RenderLimits(max_size=30_000_000)) == "20000000"
    generator = HTTPGenerator(model="m", spec=body_spec(template))
    generator.render_limits = RenderLimits(max_size=30_000_000)
    assert generator.render_limits.max_size == 30_000_000


def test_limits_are_checked_when_set() -> None:
    with pytest.raises(InvalidGeneratorError, match=r"RenderLimits\.seconds must be a finite"):
        RenderLimits(seconds=float("nan"))
    with pytest.raises(InvalidGeneratorError, match=r"RenderLimits\.max_steps must be a whole"):
        RenderLimits(max_steps=0)
    with pytest.raises(InvalidGeneratorError, match="render_limits must be a RenderLimits"):
        HTTPGenerator(model="m").render_limits = {"seconds": 100}  # type: ignore[assignment]


def test_an_identifier_cannot_set_the_limits() -> None:
    with pytest.raises(InvalidGeneratorError, match="unknown key 'render_limits'"):
        jib.get_generator(identifier(body_spec("{{ content }}"), ",render_limits=1000"))


async def generate_error(generator: HTTPGenerator, **params: Any) -> BaseException:
    chat = await asyncio.wait_for(
        generator.chat("hi").with_(**params).run(on_failed="include"), timeout=30
    )
    assert chat.error is not None
    return chat.error


async def test_a_request_timeout_lowers_the_time_budget() -> None:
    generator = jib.get_generator(identifier(body_spec(MACRO_BOMB), ",timeout=0.3"))
    assert isinstance(generator, HTTPGenerator)
    generator.render_limits = RenderLimits(max_steps=10**12)  # only the time can run out
    error = await generate_error(generator)
    assert isinstance(error, BudgetExceededError)
    assert "took longer than its time budget of 0.3s" in str(error)


async def test_a_spec_timeout_cannot_raise_the_time_budget() -> None:
    spec = body_spec(MACRO_BOMB)
    spec["request"]["timeout"] = 1000
    generator = HTTPGenerator(model="m", spec=spec)
    generator.render_limits = RenderLimits(max_steps=10**12)  # only the time can run out
    error = await generate_error(generator)
    assert "took longer than its time budget of 1s" in str(error)


async def test_limits_set_in_code_apply_to_every_request() -> None:
    generator = HTTPGenerator(model="m", spec=body_spec(MACRO_BOMB))
    generator.render_limits = RenderLimits(seconds=0.2)
    error = await generate_error(generator)
    assert "took longer than its time budget of 0.2s" in str(error)
    generator.render_limits = RenderLimits(max_steps=500)
    error = await generate_error(generator, timeout=5)
    assert "more than 500 loop iterations and calls" in str(error)


async def test_a_runaway_template_holds_the_event_loop_until_its_time_budget_only() -> None:
    # Templates render on the event loop: what ends a runaway one there is its time budget
    # (the request's 0.5 s), which the error reports, and the loop runs other tasks again.
    generator = HTTPGenerator(model="m", spec=body_spec(NESTED_LOOPS))
    generator.render_limits = RenderLimits(max_steps=10**12)  # only the time can run out
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0)
            beats += 1

    beating = asyncio.create_task(heartbeat())
    try:
        error = await generate_error(generator, timeout=0.5)
        after_render = beats
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        beating.cancel()
    assert isinstance(error, BudgetExceededError)
    assert "took longer than its time budget of 0.5s" in str(error)
    assert beats > after_render


# -- templates: compiling ------------------------------------------------------------------------


def test_a_template_with_too_many_tokens_is_refused_quickly() -> None:
    result = measure(lambda: jib.get_generator(identifier(body_spec("{{ x }}" * 3000))))
    assert isinstance(result.error, InvalidGeneratorError)
    assert "holds more than 10,000 tokens (names, operators, literals, text runs)" in str(
        result.error
    )
    assert result.within_budget(), result


def test_a_spec_with_many_templates_is_refused_after_its_compile_time() -> None:
    many = {f"k{i}": "{{ content|upper }}" + str(i) for i in range(20_000)}
    spec = {"request": {"url": URL, "transforms": [{"type": "json", "pattern": many}]}}
    result = measure(lambda: HTTPSpec.model_validate(spec))
    assert isinstance(result.error, ValidationError)
    assert "compiling the spec's templates and patterns took longer than 1s" in str(result.error)
    assert result.cpu_seconds < 3


def test_a_deeply_nested_template_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="it nests too deeply"):
        HTTPSpec.model_validate(body_spec("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"))


def test_an_overlong_template_is_refused() -> None:
    with pytest.raises(ValidationError, match="the template is 100,001 characters long"):
        HTTPSpec.model_validate(body_spec("x" * 100_001))


# -- regexes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "items"),
    [("(?:a{65535}){65535}", "4,294,901,760"), ("((a{1000}){1000}){1000}", "1,000,000,000")],
)
def test_regex_compile_bomb_in_an_identifier_is_refused_quickly(pattern: str, items: str) -> None:
    result = measure(lambda: jib.get_generator(identifier(response_spec("regex", pattern))))
    assert isinstance(result.error, InvalidGeneratorError)
    assert (
        f"response.transforms[0]: regex '{pattern}' repeats too much: unrolled, its counted "
        f"repeats hold {items} items and the limit is 20,000"
    ) in str(result.error)
    assert result.within_budget(), result


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a" * 10_001, "the regex is 10,001 characters long; the limit is 10,000"),
        ("(" * 101 + "a" + ")" * 101, "the regex nests groups deeper than 100 levels"),
        ("x{30000}", "hold 30,000 items and the limit is 20,000"),
    ],
)
def test_expensive_regexes_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HTTPSpec.model_validate(response_spec("regex", pattern))


def test_the_patterns_of_a_spec_are_bounded_together() -> None:
    steps = [{"type": "regex", "pattern": f"(?:ab{{9000}}){i}"} for i in range(20)]
    spec = {"request": {"url": URL}, "response": {"transforms": steps}}
    with pytest.raises(ValidationError, match="the spec's regexes hold 108,038 items"):
        HTTPSpec.model_validate(spec)


@pytest.mark.parametrize(
    "pattern",
    [r"\d{4}-\d{2}-\d{2}", r"[\p{L}\]{}]{1,50}", "a{0,20000}", r"(?i)answer:\s*(\w+)", "x{,5}"],
)
def test_ordinary_regexes_compile(pattern: str) -> None:
    HTTPSpec.model_validate(response_spec("regex", pattern))


def test_a_catastrophic_regex_stops_within_the_wall_clock_budget() -> None:
    spec = HTTPSpec.model_validate(response_spec("regex", "(a|aa)+$"))
    result = measure(lambda: spec.parse_response_body("a" * 60 + "!"))
    assert isinstance(result.error, BudgetExceededError)
    assert "regex '(a|aa)+$' took longer than 1s on a 61-character text" in str(result.error)
    assert result.within_budget(), result


# -- JSONPath ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [22, 27, 40])
def test_jsonpath_regex_filter_ends_quickly(length: int) -> None:
    spec = HTTPSpec.model_validate(response_spec("jsonpath", "$[?(@.a =~ '(a+)+$')]"))
    body = json.dumps([{"a": "a" * length + "b"}])
    result = measure(lambda: spec.parse_response_body(body))
    assert isinstance(result.error, ProcessingError)
    assert "jsonpath '$[?(@.a =~ '(a+)+$')]' matched nothing" in str(result.error)
    assert result.within_budget(), result


def test_jsonpath_regex_filter_that_backtracks_hits_the_budget() -> None:
    spec = HTTPSpec.model_validate(response_spec("jsonpath", "$[?(@.a =~ '(a|aa)+$')]"))
    body = json.dumps([{"a": "a" * 60 + "!"}] * 20)
    result = measure(lambda: spec.parse_response_body(body))
    assert isinstance(result.error, BudgetExceededError)
    assert str(result.error).startswith(
        "jsonpath '$[?(@.a =~ '(a|aa)+$')]': regex '(a|aa)+$' took longer than"
    )
    assert result.within_budget(), result


def test_jsonpath_regex_filter_still_filters() -> None:
    spec = HTTPSpec.model_validate(response_spec("jsonpath", "$[?(@.a =~ 'b')].a"))
    assert spec.parse_response_body('[{"a": "abc"}, {"a": "x"}, {"a": 1}]') == "abc"
    assert spec.needs_worker_thread


def test_jsonpath_regex_compile_bomb_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"regex '\(\?:a\{65535\}\)\{65535\}' repeats"):
        HTTPSpec.model_validate(response_spec("jsonpath", "$[?(@.a =~ '(?:a{65535}){65535}')]"))


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "$.a * $.b",
            {"a": "x", "b": 1_000_000_000},
            "jsonpath '*' would build about 1,000,000,000",
        ),
        ("$.a.`sub(/(a|aa)+$/, x)`", {"a": "a" * 60 + "!"}, "took longer than"),
    ],
)
def test_jsonpath_products_and_substitutions_are_bounded(
    path: str, body: dict[str, Any], message: str
) -> None:
    spec = HTTPSpec.model_validate(response_spec("jsonpath", path))
    result = measure(lambda: spec.parse_response_body(json.dumps(body)))
    assert isinstance(result.error, BudgetExceededError)
    assert message in str(result.error)
    assert result.within_budget(), result


def test_jsonpath_substitution_still_substitutes() -> None:
    spec = HTTPSpec.model_validate(response_spec("jsonpath", "$.a.`sub(/[0-9]+/, N)`"))
    assert spec.parse_response_body('{"a": "x12y"}') == "xNy"


# -- the CLI -------------------------------------------------------------------------------------


@dataclass
class CliRun:
    """A finished `jib` process, with its CPU time and its own peak memory."""

    result: Result
    cpu_seconds: float
    megabytes: float


# Runs a command and writes its peak memory (KiB) and CPU time to a file. A child's peak counts
# the memory its parent held when it forked, so the test process (hundreds of MB after many
# tests) starts this small launcher, whose child is then measured alone.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.fixture
def jib_cli(tmp_path: Path) -> Callable[..., CliRun]:
    """Run `jib ARGS…` in a subprocess with an isolated store; measure it."""
    env = isolated_env(tmp_path)
    peak = tmp_path / "peak"

    def run(*args: str) -> CliRun:
        completed = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(peak), *jib_command(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        result = Result(completed.returncode, completed.stdout, completed.stderr)
        kilobytes, cpu = peak.read_text().split()
        return CliRun(result, float(cpu), int(kilobytes) / 1024)

    return run


# A CLI run also starts Python and imports jib, about 1 s of CPU: the bound is that start plus
# the budget, where the reproducers ran for minutes before.
CLI_SECONDS = 10


def test_spec_render_of_a_runaway_template_ends_in_an_error(
    jib_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(body_spec(MACRO_BOMB)))
    run = jib_cli("spec", "render", str(spec_file))
    result = run.result
    assert result.code == 2
    assert result.last_error_line in {
        f"error: the spec cannot render this request: {message}"
        for message in expected(TIME_OR_STEPS)
    }
    assert run.cpu_seconds < CLI_SECONDS
    assert run.megabytes < MEGABYTES


def test_spec_render_of_an_identifier_with_a_padding_bomb_ends_in_an_error(
    jib_cli: Callable[..., CliRun],
) -> None:
    run = jib_cli("spec", "render", identifier(body_spec("{{ 'x'|center(500000000) }}")))
    result = run.result
    assert result.code == 2
    assert "the filter 'center' would build about 500,000,000 characters" in result.last_error_line
    assert run.cpu_seconds < CLI_SECONDS
    assert run.megabytes < MEGABYTES


def test_chat_with_a_runaway_template_ends_within_the_request_timeout(
    jib_cli: Callable[..., CliRun],
) -> None:
    run = jib_cli("chat", identifier(body_spec(MACRO_BOMB), ",timeout=0.5"), "hi")
    result = run.result
    assert result.code == 1
    assert result.last_error_line == (
        "error: BudgetExceededError: request.transforms[0] (jinja): template blocked by the "
        "sandbox: took longer than its time budget of 0.5s (RenderLimits.seconds, lowered by "
        "the request timeout)"
    )
    assert run.cpu_seconds < CLI_SECONDS
    assert run.megabytes < MEGABYTES


def test_chat_with_a_regex_bomb_identifier_ends_in_an_error(
    jib_cli: Callable[..., CliRun],
) -> None:
    run = jib_cli("chat", identifier(response_spec("regex", "(?:a{65535}){65535}")), "hi")
    result = run.result
    assert result.code != 0
    assert "repeats too much" in result.last_error_line
    assert "Traceback" not in result.stderr
    assert run.cpu_seconds < CLI_SECONDS
    assert run.megabytes < MEGABYTES
