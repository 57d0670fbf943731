"""Errors carry no data, redaction knows a key's encoded forms, response templates see no secrets.

Issue 16 §3: a stored `http!` chat with `api_key=env:OPENAI_API_KEY` (a provider key variable,
a loopback host: both allowed) and the header template `{{ state[api_key|reverse] }}`,
continued once with `jib chat --continue`, stored the error `'dict object' has no attribute
'<the key reversed>'`, which `jib log --failed --json` hands out. A server that echoes the key
base64-encoded got it stored the same way, and `{{ state.access_token }}` in a response template
landed in stored answers.

Now: a missing name is quoted only when the template wrote it; of other exceptions a template
raises only the type, the line and a type-only message are kept; no error quotes a rendered
value or the response; `redact` masks the base64, hex and percent-encoded forms of every secret
it knows; response templates see `state` without its secret-named keys. The server is the hostile
one on 127.0.0.1 (tests/security/hostile_server.py), which records what reaches it.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jib import Chat, Message, ProcessingError
from jib._secrets import encoded_forms, redact
from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, isolated_env, make_runner
from tests.security.hostile_server import ECHOES, RunningHostile, run_hostile

KEY = "sk-victim-KEY-0123456789abcdef"
TOKEN = "tok-victim-ACCESS-9876543210"
NO_RETRY = {"max_retries": 0}


def forms(secret: str) -> set[str]:
    """Every form of `secret` that must not be stored or printed: as written, reversed, their
    encodings, and a long middle part of each."""
    found = {secret, secret[::-1], secret[4:-4], secret[::-1][4:-4]}
    found |= encoded_forms(secret) | encoded_forms(secret[::-1])
    return found


SECRET_FORMS = forms(KEY) | forms(TOKEN)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        leaked = sorted(form for form in SECRET_FORMS if form in text)
        assert not leaked, f"{leaked} in {text[:2000]!r}"


def everything_about(error: BaseException) -> str:
    """The error as a traceback would print it, causes and contexts included."""
    return "".join(traceback.format_exception(error))


@pytest.fixture
def hostile() -> Iterator[RunningHostile]:
    """A server on 127.0.0.1 that records what it receives."""
    with run_hostile() as running:
        yield running


def generator_for(spec: dict[str, Any], **state: Any) -> HTTPGenerator:
    generator = HTTPGenerator(model="m", api_key=KEY, spec=spec, max_retries=0)
    generator.state.update(state)
    return generator


async def failed_chat(generator: HTTPGenerator) -> Chat:
    chat = await generator.chat("hi").run(on_failed="include")
    assert chat.error is not None, chat.content
    return chat


# -- templates: errors say which step and what kind of failure -----------------------------------

COMPUTED = (
    "'dict object' has no attribute or item of the name the template computed (not shown: it "
    "comes from the data)"
)
NOT_SHOWN = "(its message is not shown: it may quote the data)"

HEADER_TEMPLATES = [
    pytest.param("{{ state[api_key|reverse] }}", f"missing template variable: {COMPUTED}", id="r"),
    pytest.param("{{ state[api_key] }}", f"missing template variable: {COMPUTED}", id="key"),
    pytest.param(
        "{{ {}[api_key|reverse|list|join('-')] }}",
        f"missing template variable: {COMPUTED}",
        id="joined",
    ),
    pytest.param(
        "{{ (api_key|reverse)|fromjson }}",
        "fromjson: not valid JSON (Expecting value at line 1 column 1)",
        id="fromjson",
    ),
    pytest.param(
        "{{ [1].index(api_key|reverse) }}",
        f"template failed at line 1: ValueError {NOT_SHOWN}",
        id="index",
    ),
    pytest.param(
        "{{ ('{' ~ (api_key|reverse) ~ '}').format() }}",
        f"template failed at line 1: KeyError {NOT_SHOWN}",
        id="format-field",
    ),
    pytest.param(
        "{{ (api_key|reverse).encode(api_key|reverse) }}",
        f"template failed at line 1: LookupError {NOT_SHOWN}",
        id="encoding",
    ),
    pytest.param(
        "{{ now().strptime(api_key|reverse, '%Y') }}",
        f"template failed at line 1: ValueError {NOT_SHOWN}",
        id="strptime",
    ),
    pytest.param(
        "{{ (api_key|reverse) + 1 }}",
        'template failed at line 1: TypeError: can only concatenate str (not "int") to str',
        id="type-error",
    ),
    pytest.param(
        "\n{{ (api_key|reverse) < 1 }}",
        "template failed at line 2: TypeError: '<' not supported between instances of 'str' "
        "and 'int'",
        id="comparison",
    ),
    pytest.param(
        "{{ {'a': 1}|dictsort(by=api_key|reverse) }}",
        'template failed at line 1: FilterArgumentError: You can only sort by either "…" or "…"',
        id="filter-argument",
    ),
    pytest.param(
        "{{ 'x'|center(api_key|length * 1000000) }}",
        "template blocked by the sandbox: the filter 'center' would build about 30,000,000 "
        "characters or items; the limit is 10,000,000 (RenderLimits.max_size)",
        id="size",
    ),
]


@pytest.mark.parametrize(("template", "message"), HEADER_TEMPLATES)
async def test_a_header_template_computing_on_the_key_fails_without_data(
    hostile: RunningHostile, template: str, message: str
) -> None:
    spec = {"request": {"url": f"{hostile.origin}/x", "headers": {"X-Q": template}}}
    chat = await failed_chat(generator_for(spec))

    assert isinstance(chat.error, ProcessingError)
    assert str(chat.error) == f"request.headers['X-Q']: {message}"
    assert_no_secret(str(chat.error), everything_about(chat.error), chat.to_json())
    assert hostile.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "{{ api_key|reverse }}",
            "request.url must render to an http(s) URL; it rendered a 30-character text that "
            "does not start with http:// or https://",
        ),
        (
            "http://127.0.0.1:{{ api_key|reverse }}/",
            "request.url rendered an invalid URL (its port is not a number from 0 to 65535, or "
            "its IPv6 address is malformed)",
        ),
    ],
)
async def test_a_url_template_rendering_the_key_fails_without_data(
    hostile: RunningHostile, url: str, message: str
) -> None:
    chat = await failed_chat(generator_for({"request": {"url": url}}))

    assert str(chat.error) == message
    assert_no_secret(everything_about(chat.error or Exception()), chat.to_json())
    assert hostile.requests == []


async def test_a_name_the_template_wrote_is_still_quoted(hostile: RunningHostile) -> None:
    spec = {"request": {"url": f"{hostile.origin}/x", "headers": {"X-Q": "{{ state.sesion_id }}"}}}
    chat = await failed_chat(generator_for(spec))

    assert str(chat.error) == (
        "request.headers['X-Q']: missing template variable: 'dict object' has no attribute "
        "'sesion_id'"
    )
    spec["request"]["headers"] = {"X-Q": "{{ contnt }}"}
    chat = await failed_chat(generator_for(spec))
    assert (
        str(chat.error)
        == "request.headers['X-Q']: missing template variable: 'contnt' is undefined"
    )


async def test_a_secret_written_into_the_template_itself_is_masked(
    hostile: RunningHostile,
) -> None:
    spec = {
        "request": {
            "url": f"{hostile.origin}/x",
            "headers": {"X-Q": f"{{{{ state.{KEY.replace('-', '_')} }}}}"},
        }
    }
    generator = generator_for(spec)
    generator.api_key = KEY.replace("-", "_")
    chat = await failed_chat(generator)

    assert str(chat.error) == (
        "request.headers['X-Q']: missing template variable: 'dict object' has no attribute '***'"
    )


async def test_the_same_template_on_benign_values_still_renders(hostile: RunningHostile) -> None:
    spec = {
        "request": {
            "url": f"{hostile.origin}/x",
            "headers": {"X-Q": "{{ state[model|reverse] }} {{ (model ~ '1')|length }}"},
        },
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.answer"}]},
    }
    chat = await generator_for(spec, m="found").chat("hi").run()

    assert chat.content == "ok"
    assert hostile.requests[0]["headers"]["x-q"] == "found 2"


# -- the reproducer, through the CLI ---------------------------------------------------------------


@pytest.fixture
def jib_cli(tmp_path: Path) -> JibRunner:
    """`jib …` in a subprocess, its store in this test's folder, the key in its environment."""
    env = isolated_env(tmp_path)
    env["OPENAI_API_KEY"] = KEY
    return make_runner(env, tmp_path)


def plant(store: Path, generator_id: str) -> None:
    """Save a chat made with `generator_id` into the store, as anyone with write access could."""
    store.parent.mkdir(parents=True, exist_ok=True)
    data = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "hello")])
    planted = data.to_dict()
    planted["generator_id"] = generator_id
    with open_store(store) as opened:
        opened.save(Chat.from_dict(planted, rebuild_generator=False))


def reproducer_identifier(origin: str, header: str) -> str:
    spec = {
        "request": {"url": f"{origin}/x", "headers": {"X-Q": header}},
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.answer"}]},
    }
    generator = HTTPGenerator(model="x", api_key="env:OPENAI_API_KEY", spec=spec)
    return generator.to_identifier()


def store_bytes(store: Path) -> str:
    return b"".join(path.read_bytes() for path in store.parent.glob(f"{store.name}*")).decode(
        "utf-8", "replace"
    )


def test_the_reproducer_continued_with_the_cli_stores_and_prints_no_secret(
    hostile: RunningHostile, jib_cli: JibRunner, tmp_path: Path
) -> None:
    store = tmp_path / "data" / "jib" / "jib.db"
    plant(store, reproducer_identifier(hostile.origin, "{{ state[api_key|reverse] }}"))

    continued = jib_cli("chat", "--continue", "again")
    logged = jib_cli("log", "--failed", "--json")

    assert continued.code == 1
    assert continued.last_error_line == (
        f"error: ProcessingError: request.headers['X-Q']: missing template variable: {COMPUTED}"
    )
    [record] = logged.json()
    assert record["error"]["message"] == continued.last_error_line.split(": ", 2)[2]
    assert_no_secret(
        continued.stdout, continued.stderr, logged.stdout, logged.stderr, store_bytes(store)
    )
    assert hostile.requests == []


def test_a_benign_header_continued_with_the_cli_sends_the_key_only_to_the_server(
    hostile: RunningHostile, jib_cli: JibRunner, tmp_path: Path
) -> None:
    store = tmp_path / "data" / "jib" / "jib.db"
    plant(store, reproducer_identifier(hostile.origin, "Bearer {{ api_key }}"))

    continued = jib_cli("chat", "--continue", "again")
    shown = jib_cli("log", "--json")

    assert continued.code == 0, continued.stderr
    assert continued.stdout == "ok\n"
    # The user's key goes to the server the stored chat names (loopback, allowed) and nowhere else.
    assert [request["headers"]["x-q"] for request in hostile.requests] == [f"Bearer {KEY}"]
    assert_no_secret(continued.stdout, continued.stderr, shown.stdout, store_bytes(store))


# -- a server that echoes the key, encoded --------------------------------------------------------


@pytest.mark.parametrize("error_path", [None, "$.error.message"])
@pytest.mark.parametrize("encoding", sorted(ECHOES))
async def test_a_key_echoed_encoded_in_an_error_is_never_stored(
    hostile: RunningHostile, encoding: str, error_path: str | None
) -> None:
    spec: dict[str, Any] = {
        "request": {
            "url": f"{hostile.origin}/echo/{encoding}",
            "headers": {"Authorization": "Bearer {{ api_key }}"},
        },
    }
    if error_path is not None:
        spec["response"] = {"error_path": error_path}
    chat = await failed_chat(generator_for(spec))

    assert str(chat.error).startswith("[http!m] HTTP 401: ")
    assert "invalid key " in str(chat.error)
    assert "***" in str(chat.error)
    assert_no_secret(everything_about(chat.error or Exception()), chat.to_json())
    assert len(hostile.requests) == 1


# -- response templates and `state` ---------------------------------------------------------------

STATE = {"access_token": TOKEN, "user": "alice", "oauth": {"refresh_token": TOKEN, "scope": "r"}}


def answer_spec(origin: str, template: str) -> dict[str, Any]:
    return {
        "request": {
            "url": f"{origin}/x",
            "headers": {"Authorization": "Bearer {{ state.access_token }}"},
        },
        "response": {
            "transforms": [
                {"type": "jsonpath", "pattern": "$.answer"},
                {"type": "jinja", "pattern": template},
            ]
        },
    }


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ state.access_token }}",
            "state['access_token'] is hidden from response templates: its name marks it as a "
            "secret (what response templates write is stored); only request templates can read it",
        ),
        (
            "{{ state.oauth.refresh_token }}",
            "state['oauth']['refresh_token'] is hidden from response templates",
        ),
        ("{{ state['access' ~ '_token'] }}", "state['access_token'] is hidden"),
        ("{% for k, v in state|dictsort %}{{ v }}{% endfor %}", "is hidden from response"),
        ("{{ state|tojson }}", "TypeError: Object of type SpecUndefined is not JSON serializable"),
    ],
)
async def test_response_templates_do_not_see_secret_named_state(
    hostile: RunningHostile, template: str, message: str
) -> None:
    chat = await failed_chat(generator_for(answer_spec(hostile.origin, template), **STATE))

    assert str(chat.error).startswith("response.transforms[1] (jinja): ")
    assert message in str(chat.error)
    assert_no_secret(everything_about(chat.error or Exception()), chat.to_json())
    # Request templates still read it: the token went to the server, as the spec says.
    assert hostile.requests[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


async def test_response_templates_still_see_the_rest_of_state(hostile: RunningHostile) -> None:
    spec = answer_spec(
        hostile.origin,
        "{{ result }} for {{ state.user }} ({{ state.oauth.scope }}, "
        "{{ 'token' if state.access_token is defined else 'no token' }}, "
        "{{ state|length }} keys)",
    )
    chat = await generator_for(spec, **STATE).chat("hi").run()

    assert chat.content == "ok for alice (r, no token, 3 keys)"


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ECHOES))
def test_redact_masks_every_encoded_form(encoding: str) -> None:
    echoed = ECHOES[encoding](KEY)
    text = redact(f"upstream said: invalid key {echoed} (request 12)", [KEY])

    assert_no_secret(text)
    assert text.startswith("upstream said: invalid key ")
    assert text.endswith(" (request 12)")


def test_redact_masks_a_key_inside_a_longer_base64_text() -> None:
    for prefix in ("", "u:", "us:", "use:", "user:"):
        encoded = base64.b64encode(f"{prefix}{KEY}:tail".encode()).decode()
        masked = redact(encoded, [KEY])
        # What is left of the encoding no longer spells out the key.
        assert "***" in masked
        for part in masked.split("***"):
            assert KEY[4:-4] not in base64.b64decode(part + "===", validate=False).decode("latin-1")


def test_redact_leaves_ordinary_text_alone() -> None:
    text = json.dumps(
        {"id": "chatcmpl-0123456789", "sig": base64.b64encode(b"something else").decode()}
    )
    assert redact(text, [KEY, TOKEN]) == text
