"""Templates from data: structures that blow up in C, and templates that cannot be compiled.

Issue 16 §5: two lists built by doubling forty times, compared with `==` (or `in`, `<`,
`|sort`, `|max`, `is eq`, `.index()`, `.count()`), walk 2^40 elements inside C, where the
sandbox cannot count. Every list, tuple or dict a template builds is now charged its size with
shared parts counted in full, so the doubling is refused at about 2^20, before any comparison.

Issue 16 §10: a spec with 25 nested `{% for %}` raised Python's bare `SyntaxError` from
`compile_jinja`; compiling now fails only with `CompileError` (a `ProcessingError`, and a
`ValueError` for pydantic), whatever Python's compiler says.

Each case runs in a child process capped at 200 MB above a warmed-up jib, against a server on
127.0.0.1 that records what it receives: it ends with a jib error, within 2 s of CPU, having sent
nothing; its control (the same flow, benign) works and sends its request.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import jib
from jib import Chat, Message, ProcessingError
from jib.errors import InvalidGeneratorError
from jib.generator.http import HTTPGenerator, HTTPSpec
from jib.generator.http.transforms import CompileError, compile_jinja
from tests.security.capped import CPU_SECONDS, run_capped
from tests.security.hostile_server import RunningHostile, run_hostile

DOUBLING = (
    "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
    "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
)
SIZE_LIMIT = "the limit is 10,000,000 (RenderLimits.max_size)"

BLOW_UPS = [
    pytest.param(DOUBLING + "{{ ns.a == ns.b }}", "a list would build", id="eq"),
    pytest.param(DOUBLING + "{{ ns.a != ns.b }}", "a list would build", id="ne"),
    pytest.param(DOUBLING + "{{ ns.a in [ns.b] }}", "a list would build", id="in"),
    pytest.param(DOUBLING + "{{ ns.a < ns.b }}", "a list would build", id="lt"),
    pytest.param(DOUBLING + "{{ [ns.a, ns.b]|sort }}", "a list would build", id="sort"),
    pytest.param(DOUBLING + "{{ [ns.a, ns.b]|max }}", "a list would build", id="max"),
    pytest.param(DOUBLING + "{{ ns.a is eq ns.b }}", "a list would build", id="is-eq"),
    pytest.param(DOUBLING + "{{ [ns.a].index(ns.b) }}", "a list would build", id="index"),
    pytest.param(DOUBLING + "{{ [ns.a].count(ns.b) }}", "a list would build", id="count"),
    pytest.param(DOUBLING + "{{ ns.a|upper }}", "a list would build", id="printed-by-a-filter"),
    pytest.param(
        "{% set ns = namespace(a=(0,)) %}{% for i in range(40) %}{% set ns.a = (ns.a, ns.a) %}"
        "{% endfor %}{{ {ns.a: 1} }}",
        "a tuple would build",
        id="hashed-tuple",
    ),
    pytest.param(
        "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a] + [ns.a] %}{% set ns.b = [ns.b] + [ns.b] %}{% endfor %}"
        "{{ ns.a == ns.b }}",
        "would build",
        id="plus",
    ),
    pytest.param(
        "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a] * 2 %}{% set ns.b = [ns.b] * 2 %}{% endfor %}{{ ns.a == ns.b }}",
        "would build",
        id="times",
    ),
    pytest.param(
        "{% set ns = namespace(a=1, b=1) %}{% for i in range(40) %}"
        "{% set ns.a = dict(x=ns.a, y=ns.a) %}{% set ns.b = dict(x=ns.b, y=ns.b) %}{% endfor %}"
        "{{ ns.a == ns.b }}",
        "dict() would build",
        id="dict-global",
    ),
    pytest.param(
        "{% set ns = namespace(a=cycler(1), b=cycler(1)) %}{% for i in range(40) %}"
        "{% set ns.a = cycler(ns.a.items, ns.a.items) %}"
        "{% set ns.b = cycler(ns.b.items, ns.b.items) %}{% endfor %}{{ ns.a.items == ns.b.items }}",
        "Cycler() would build",
        id="cycler",
    ),
    pytest.param(
        "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.u, ns.u]|map('default', ns.a)|batch(2)|first %}"
        "{% set ns.b = [ns.u, ns.u]|map('default', ns.b)|batch(2)|first %}{% endfor %}"
        "{{ ns.a == ns.b }}",
        "would build",
        id="generator-filters",
    ),
    pytest.param(
        "{% set ns = namespace(a=0, b=0) %}{% for i in range(40) %}"
        "{% set ns.a = {}.fromkeys([1, 2], ns.a) %}{% set ns.b = {}.fromkeys([1, 2], ns.b) %}"
        "{% endfor %}{{ ns.a == ns.b }}",
        "fromkeys() would build",
        id="fromkeys",
    ),
    pytest.param(
        "{% macro f(n) %}{% if n %}{{ f(n - 1, varargs, varargs) }}{% else %}"
        "{{ varargs == varargs|list }}{% endif %}{% endmacro %}{{ f(40, 0) }}",
        "f() would build",
        id="macro-varargs",
    ),
]


@pytest.fixture
def hostile() -> Iterator[RunningHostile]:
    """A server on 127.0.0.1 that records what it receives."""
    with run_hostile() as running:
        yield running


def body_spec(url: str, template: str) -> dict[str, Any]:
    return {
        "request": {"url": url, "transforms": [{"type": "jinja", "pattern": template}]},
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.answer"}]},
    }


def identifier(spec: dict[str, Any]) -> str:
    encoded = base64.urlsafe_b64encode(yaml.safe_dump(spec).encode()).decode().rstrip("=")
    return f"http!m,spec={encoded}"


# -- cases run in the capped child -----------------------------------------------------------------


async def case_chat(identifier: str) -> str:
    """Rebuild a generator from an identifier and chat once."""
    generator = jib.get_generator(identifier)
    assert isinstance(generator, HTTPGenerator)
    chat = await generator.chat("hi").run(on_failed="include")
    if chat.error is not None:
        raise chat.error
    return chat.content


def case_compile(template: str) -> None:
    """Compile one template."""
    compile_jinja(template)


# -- §5: structures compared, sorted, hashed -----------------------------------------------------


@pytest.mark.parametrize(("template", "what"), BLOW_UPS)
def test_a_shared_structure_blow_up_ends_in_a_budget_error(
    hostile: RunningHostile, template: str, what: str
) -> None:
    result = run_capped(case_chat, identifier(body_spec(hostile.origin, template)))

    assert result.budget_exceeded, result.output
    assert result.message.startswith(
        "request.transforms[0] (jinja): template blocked by the sandbox: "
    )
    assert what in result.message
    assert result.message.endswith(SIZE_LIMIT)
    assert result.cpu_seconds < CPU_SECONDS, result
    assert hostile.requests == []


def test_a_small_shared_structure_still_compares_sorts_and_hashes(
    hostile: RunningHostile,
) -> None:
    template = (
        "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(8) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ ns.a == ns.b }} {{ ns.a in [ns.b] }} {{ [ns.b, ns.a]|sort|length }} "
        "{{ {(1, 2): 'x'}[(1, 2)] }} {{ [3, 1, 2]|sort|join(',') }} {{ [ns.a].index(ns.b) }}"
    )
    result = run_capped(case_chat, identifier(body_spec(hostile.origin, template)))

    assert result.error_type is None, result.output
    assert result.value == "ok"
    assert [request["body"] for request in hostile.requests] == ["True True 2 x 1,2,3 0"]


def test_templates_may_build_what_the_budget_allows() -> None:
    # 2^16 leaves, shared: about a million items once counted in full, within the budget.
    template = (
        "{% set ns = namespace(a=[0]) %}{% for i in range(16) %}{% set ns.a = [ns.a, ns.a] %}"
        "{% endfor %}{{ ns.a|length }} {{ {'k': [content] * 3}|tojson }}"
    )
    spec = HTTPSpec.model_validate(body_spec("http://127.0.0.1:9/", template))
    context = jib.generator.http.RequestTransformContext(content="hi")
    assert spec.make_request_body(context) == '2 {"k": ["hi", "hi", "hi"]}'


# -- §10: compiling -------------------------------------------------------------------------------

NESTED_FORS = "{% for a in x %}" * 25 + "{% endfor %}" * 25

UNCOMPILABLE = [
    pytest.param(NESTED_FORS, "it nests blocks too deeply to compile", id="25-nested-fors"),
    pytest.param(
        "{% for a in x if a %}" * 22 + "{% endfor %}" * 22,
        "it nests blocks too deeply to compile",
        id="22-filtered-fors",
    ),
    pytest.param(
        "{% if a %}" * 100 + "{% endif %}" * 100,
        "it nests blocks too deeply to compile",
        id="100-nested-ifs",
    ),
    pytest.param(
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
        "it nests too deeply or is too large to compile",
        id="deep-parentheses",
    ),
    pytest.param("{{ " + "9" * 5000 + " }}", "a number literal is too long", id="long-number"),
    pytest.param("{{ x ", "unexpected end of template", id="syntax-error"),
    pytest.param("{% raw %}{% raw %}", "Missing end of raw directive", id="unclosed-raw"),
]


@pytest.mark.parametrize(("template", "message"), UNCOMPILABLE)
def test_compiling_any_template_raises_only_compile_error(template: str, message: str) -> None:
    result = run_capped(case_compile, template)

    assert result.error_type == "jib.generator.http.transforms.CompileError", result.output
    assert result.message.startswith("invalid Jinja template ")
    assert message in result.message
    assert result.cpu_seconds < CPU_SECONDS, result


def test_compile_error_is_a_processing_error_and_a_value_error() -> None:
    with pytest.raises(CompileError) as caught:
        compile_jinja(NESTED_FORS)
    assert isinstance(caught.value, ProcessingError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None  # Python's SyntaxError says no more than the message


def test_a_spec_with_25_nested_loops_is_a_validation_error_naming_the_field() -> None:
    spec = body_spec("http://127.0.0.1:9/", "x")
    spec["request"]["headers"] = {"X-Loops": NESTED_FORS}
    with pytest.raises(ValidationError) as caught:
        HTTPSpec.model_validate(spec)
    assert "request.headers['X-Loops']: invalid Jinja template" in str(caught.value)


def test_a_stored_chat_whose_spec_cannot_compile_fails_with_a_jib_error(
    hostile: RunningHostile,
) -> None:
    stored = identifier(body_spec(hostile.origin, NESTED_FORS))
    data = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "ok")]).to_dict()
    data["generator_id"] = stored

    with pytest.raises(InvalidGeneratorError) as caught:
        Chat.from_dict(data)
    assert "SyntaxError" not in str(caught.value)
    with pytest.raises(InvalidGeneratorError, match="it nests blocks too deeply to compile"):
        jib.get_generator(stored)
    assert Chat.from_dict(data, rebuild_generator=False).content == "ok"
    assert hostile.requests == []


def test_five_nested_loops_still_compile_and_render(hostile: RunningHostile) -> None:
    template = "{% for a in [1] %}" * 5 + "x" + "{% endfor %}" * 5
    result = run_capped(case_chat, identifier(body_spec(hostile.origin, template)))

    assert result.error_type is None, result.output
    assert result.value == "ok"
    assert [request["body"] for request in hostile.requests] == ["x"]
