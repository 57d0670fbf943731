"""Nothing leaks: keys stay out of cause chains, stored errors, CLI errors, redirects and answers.

Each reproducer runs against real servers on 127.0.0.1: the OpenAI-protocol fault server (its
`fail:401` echoes the key), the recording server (its `fail:401-partial` echoes it partly
masked, `sk-SECRE****T123`) and the HTTP test server (redirects).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import jib
from jib import Chat, Message, ProcessingError
from jib._secrets import (
    REDACTED,
    RedactedError,
    is_secret_name,
    looks_like_secret_name,
    redact,
)
from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, isolated_env, make_runner
from tests.generator.http.server import RunningServer, serve
from tests.security.recording_server import RunningRecorder, run_recorder
from tests.support.fault_server import RunningFaultServer, run_fault_server

SECRET = "sk-SECRET123"
FRAGMENTS = ("SECRET123", "sk-SECRE", "T123")
NO_RETRY = jib.GenerateParams(extra={"max_retries": 0})
SRC = Path(__file__).resolve().parents[2] / "src" / "jib"


@pytest.fixture
def fault_server() -> Iterator[RunningFaultServer]:
    """The OpenAI-protocol fault server."""
    with run_fault_server() as running:
        yield running


@pytest.fixture
def recorder() -> Iterator[RunningRecorder]:
    """The recording server."""
    with run_recorder() as running:
        yield running


@pytest.fixture
def jib_cli(tmp_path: Path) -> JibRunner:
    """`jib …` in a subprocess, its default store in this test's folder."""
    return make_runner(isolated_env(tmp_path), tmp_path)


def assert_no_secret(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, text


def store_bytes(path: Path) -> bytes:
    """Every byte of a SQLite store: its file, WAL and shared memory."""
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def chain(error: BaseException) -> list[BaseException]:
    """`error` and every exception reachable from it through `__cause__` and `__context__`."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__]
    return found


# -- cause chains --------------------------------------------------------------------------------


async def test_a_401_cause_chain_holds_no_key(
    fault_server: RunningFaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    generator = jib.get_generator(f"openai/stub,api_base={fault_server.url},api_key={SECRET}")

    chat = await generator.chat("fail:401", NO_RETRY).run(on_failed="include")

    # The server got the key and echoed it back.
    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert isinstance(chat.error, jib.AuthenticationError)
    printed = io.StringIO()
    traceback.print_exception(chat.error, file=printed)
    assert "Incorrect API key provided: ***" in printed.getvalue()
    assert "litellm.exceptions.AuthenticationError" in printed.getvalue()  # what failed, kept
    assert_no_secret(printed.getvalue())
    try:
        raise chat.error
    except jib.AuthenticationError:
        logging.getLogger("tests.security").exception("the chat failed")
    assert "Incorrect API key provided: ***" in caplog.text
    assert_no_secret(caplog.text)
    for link in chain(chat.error):
        assert_no_secret(f"{link!s} {link!r} {link.args!r}")
    assert len(chain(chat.error)) > 1


async def test_an_uncaught_provider_error_prints_no_key(fault_server: RunningFaultServer) -> None:
    generator = jib.get_generator(f"openai/stub,api_base={fault_server.url},api_key={SECRET}")

    with pytest.raises(jib.AuthenticationError) as caught:
        await generator.chat("fail:401", NO_RETRY).run()

    assert_no_secret("".join(traceback.format_exception(caught.value)))
    for link in chain(caught.value):
        assert_no_secret(f"{link!s} {link!r}")


def test_a_redacted_stand_in_keeps_the_type_name_and_pickles() -> None:
    try:
        try:
            raise ValueError(f"key {SECRET} refused")
        except ValueError as inner:
            raise RuntimeError(f"wrapped, Bearer {SECRET}") from inner
    except RuntimeError as outer:
        from jib._secrets import redacted_chain

        stand_in = redacted_chain(outer, [SECRET])

    assert str(stand_in) == "RuntimeError: wrapped, Bearer ***"
    assert isinstance(stand_in.__cause__, RedactedError)
    assert stand_in.__cause__.type_name == "ValueError"
    assert str(stand_in.__cause__) == "ValueError: key *** refused"
    assert str(pickle.loads(pickle.dumps(stand_in))) == str(stand_in)


# -- stored errors: `***` exactly, on both paths -------------------------------------------------


async def test_partly_masked_keys_are_stored_as_stars_by_litellm_and_http(
    recorder: RunningRecorder, tmp_path: Path, jib_cli: JibRunner
) -> None:
    litellm = jib.get_generator(f"openai/x,api_base={recorder.origin}/v1,api_key={SECRET}")
    http = HTTPGenerator.for_json_endpoint(
        url=f"{recorder.origin}/v1/chat/completions",
        api_key=SECRET,
        auth={"format": "Bearer {api_key}"},
        request_body={"model": "x", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content", "error_path": "$.error.message"},
    )
    path = tmp_path / "store.db"
    with open_store(path) as store:
        for generator in (litellm, http):
            chat = await generator.chat("fail:401-partial", NO_RETRY).run(on_failed="include")
            assert chat.failed
            store.save(chat)
        stored = [c.error for c in store.query(failed=True, rebuild_generator=False)]
    # The server echoed the key partly masked, as OpenAI does.
    assert recorder.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"

    messages = [str(error) for error in stored]
    assert all(m.endswith("Incorrect API key provided: ***.") for m in messages), messages
    raw = store_bytes(path)
    assert b"Incorrect API key provided: ***" in raw
    for fragment in FRAGMENTS:
        assert fragment.encode() not in raw
    logged = jib_cli("log", "--failed", "--json", "--store", str(path))
    exported = jib_cli("export", "--store", str(path))
    assert logged.code == exported.code == 0, logged.stderr + exported.stderr
    assert "Incorrect API key provided: ***" in logged.stdout
    assert_no_secret(logged.stdout + exported.stdout)


# -- identifiers in error text -------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier",
    [
        f"openai/x,api_key={SECRET}%C3,temperature=1",
        f"openai/x,api-key={SECRET},temperature=1",
        f"openai/x,bearer={SECRET}",
        f"openai/x,api_kye={SECRET}",
        f"openai/x,apikey={SECRET},temperature=True",
    ],
)
def test_jib_id_never_echoes_a_key_or_a_mistyped_one(jib_cli: JibRunner, identifier: str) -> None:
    result = jib_cli("id", identifier)

    assert result.code == 2
    assert result.last_error_line.startswith("error: invalid identifier")
    assert REDACTED in result.last_error_line
    assert_no_secret(result.stdout + result.stderr)


def test_invalid_utf8_escape_in_a_key_says_where_without_the_key() -> None:
    with pytest.raises(jib.InvalidGeneratorError) as caught:
        jib.get_generator(f"openai/x,api_key={SECRET}%C3,temperature=1")

    assert str(caught.value) == (
        "invalid identifier 'openai/x,api_key=***,temperature=1': key 'api_key': the secret "
        "value holds a %-escape that is not valid UTF-8; write a literal '%' as %25"
    )
    assert caught.value.__cause__ is None


def test_a_refused_identifier_from_data_masks_its_own_key() -> None:
    identifier = f"transformers!/d,api_key={SECRET},trust_remote_code=True"

    with pytest.raises(jib.UntrustedIdentifierError) as caught:
        jib.get_generator(identifier, trusted=False)

    assert "transformers!/d,api_key=***,trust_remote_code=True" in str(caught.value)
    assert_no_secret(str(caught.value))


# -- redirects -----------------------------------------------------------------------------------


@pytest.fixture
def two_servers() -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two HTTP test servers: the one asked, and the one a redirect points at."""
    with serve() as first, serve() as second:
        yield first, second


@pytest.mark.parametrize("status", [307, 308])
async def test_a_cross_origin_redirect_does_not_resend_a_body_holding_the_key(
    two_servers: tuple[RunningServer, RunningServer], status: int
) -> None:
    asked, other = two_servers
    port = other.url.rsplit(":", 1)[1]
    generator = HTTPGenerator.for_json_endpoint(
        url=f"{asked.url}/redirect?to=http://localhost:{port}/echo&status={status}",
        api_key=SECRET,
        request_body={"api_key": "$api_key", "q": "$content"},
        response={"content_path": "$"},
    )

    chat = await generator.chat("hi").run(on_failed="include")

    assert isinstance(chat.error, ProcessingError)
    message = str(chat.error)
    assert f"answered {status}, redirecting the POST request and its body" in message
    assert f"to http://localhost:{port}, another origin" in message
    assert len(asked.state.requests) == 1
    assert other.state.requests == []
    assert_no_secret(message)


async def test_a_same_origin_redirect_still_keeps_the_body(
    two_servers: tuple[RunningServer, RunningServer],
) -> None:
    asked, _ = two_servers
    generator = HTTPGenerator.for_json_endpoint(
        url=f"{asked.url}/redirect?to=/echo&status=308",
        api_key=SECRET,
        request_body={"api_key": "$api_key"},
        response={"content_path": "$.body.api_key"},
    )

    chat = await generator.chat("hi").run()

    assert chat.content == SECRET  # the user's own endpoint, on its own origin


# -- response templates --------------------------------------------------------------------------


async def test_response_templates_cannot_read_the_key(recorder: RunningRecorder) -> None:
    generator = HTTPGenerator(
        model="m",
        api_key=SECRET,
        spec={
            "request": {"url": f"{recorder.origin}/anything", "method": "GET"},
            "response": {
                "transforms": [
                    {"type": "jsonpath", "pattern": "$.answer"},
                    {"type": "jinja", "pattern": "{{ result }} / key={{ api_key }}"},
                ]
            },
        },
    )

    chat = await generator.chat("hi").run(on_failed="include")

    assert isinstance(chat.error, ProcessingError)
    assert str(chat.error) == (
        "response.transforms[1] (jinja): missing template variable: 'api_key' is undefined: "
        "response templates cannot read the api key (what they write is stored); only request "
        "templates can"
    )
    assert_no_secret(chat.to_json())


async def test_response_templates_may_ask_whether_a_key_is_defined(
    recorder: RunningRecorder,
) -> None:
    generator = HTTPGenerator(
        model="m",
        api_key=SECRET,
        spec={
            "request": {"url": f"{recorder.origin}/anything", "method": "GET"},
            "response": {"transforms": [{"type": "jinja", "pattern": "{{ api_key is defined }}"}]},
        },
    )

    assert (await generator.chat("hi").run()).content == "False"


# -- one module ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("API-Key", True),
        ("x-api-key", True),
        ("xApiKey", True),
        ("Authorization", True),
        ("proxy-authorization", True),
        ("access_token", True),
        ("x-amz-security-token", True),
        ("Set-Cookie", True),
        ("session_id", True),
        ("password", True),
        ("client_secret", True),
        ("bearer", True),
        ("max_tokens", False),
        ("tokenizer", False),
        ("top_k", False),
        ("api_base", False),
        ("trust_remote_code", False),
        ("content-type", False),
    ],
)
def test_which_names_are_secret(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@pytest.mark.parametrize("name", ["api_kye", "apikye", "tokn", "passwrd", "secrt", "api-key"])
def test_near_misses_count_as_secret_in_error_text(name: str) -> None:
    assert looks_like_secret_name(name)
    assert not is_secret_name(name) or name == "api-key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Incorrect API key provided: {SECRET}.", "Incorrect API key provided: ***."),
        ("Incorrect API key provided: sk-SECRE****T123.", "Incorrect API key provided: ***."),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("Authorization: Token abc", "Authorization: Token ***"),
        ("token expired or invalid", "token expired or invalid"),
        (f"GET /x?api_key={SECRET}&q=1", "GET /x?api_key=***&q=1"),
        (f'{{"api_key": "{SECRET}", "n": 1}}', '{"api_key": "***", "n": 1}'),
        ("openai/x,api_key=env:MY_KEY,max_tokens=5", "openai/x,api_key=env:MY_KEY,max_tokens=5"),
        ("expected 'key=value'", "expected 'key=value'"),
        (f"url?k={SECRET.replace('-', '%2D')}", "url?k=***"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text, [SECRET, "sk-SECRET123".replace("-", "%2D")]) == expected


def test_a_long_line_without_separators_is_redacted_in_linear_time() -> None:
    text = "a" * 1_000_000 + "=x " + "b" * 1_000_000

    assert redact(text, [SECRET]) == text  # finishes: no pattern backtracks per character


def test_a_huge_body_is_redacted_within_the_budget() -> None:
    body = "api_kye=v tokn: v a=b " * 500_000 + f"Bearer {SECRET}"  # 11 MB of pairs
    started = time.process_time()  # CPU time: a busy machine's waits for a core do not count

    redacted = redact(body, [SECRET])

    assert time.process_time() - started < 2
    assert redacted.startswith("api_kye=*** tokn: *** a=b ")
    assert redacted.endswith("Bearer ***")  # known secrets are masked everywhere


def test_the_redaction_marker_is_defined_once() -> None:
    definitions = [
        f"{path.relative_to(SRC)}"
        for path in SRC.rglob("*.py")
        if re.search(r"^\s*_?[A-Z_]+ = \"\*\*\*\"", path.read_text(), re.MULTILINE)
    ]

    assert definitions == ["_secrets.py"]


def test_chats_and_stores_hold_no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIB_TEST_SECRET_KEY", SECRET)
    chat = Chat(
        generator=jib.get_generator("echo!demo,api_key=env:JIB_TEST_SECRET_KEY"),
        messages=[Message("user", "x")],
    )

    assert "env:JIB_TEST_SECRET_KEY" in chat.to_json()
    assert_no_secret(chat.to_json() + repr(chat) + json.dumps(chat.to_dict()))
