"""`http!` against real targets: a form login with a cookie and a CSRF token (`steps:`), a
conversation the server keeps (`session:`), and streamed answers (`response.stream`).

The targets are routes of the example server (`tests.generator.http.targets`), over real HTTP on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

import jib
from jib.errors import AuthenticationError, ProcessingError, UntrustedIdentifierError
from jib.generator.http import HTTPGenerator, HTTPSpec
from jib.trust import TrustPolicy
from tests.generator.http.server import RunningServer


def login_spec(base: str, *, chat_base: str | None = None) -> dict[str, Any]:
    """The login bot: the login page's CSRF token, the form's session cookie, then chat."""
    return {
        "steps": [
            {
                "name": "login page",
                "request": {"url": f"{base}/bot/login", "method": "GET"},
                "extract": {"csrf": {"regex": 'name="csrf" value="([^"]+)"'}},
                "rerun_on": [401],
            },
            {
                "name": "login",
                "request": {
                    "url": f"{base}/bot/login",
                    "method": "POST",
                    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                    "transforms": [
                        {
                            "type": "jinja",
                            "pattern": "username=ada&password={{ api_key | urlencode }}"
                            "&csrf={{ state.csrf }}",
                        }
                    ],
                },
                "extract": {"sid": {"cookie": "sid"}},
            },
        ],
        "request": {
            "url": f"{chat_base or base}/bot/chat",
            "headers": {"X-CSRF-Token": "{{ state.csrf }}"},
            "transforms": [{"type": "json", "pattern": {"message": "$content"}}],
        },
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.reply"}]},
    }


def conversation_spec(base: str, history: str = "server") -> dict[str, Any]:
    """The bot that keeps the conversation: its id comes back in the JSON answer."""
    return {
        "request": {
            "url": f"{base}/bot/conv",
            "transforms": [
                {
                    "type": "json",
                    "pattern": {"conversation_id": "{{ session.id }}", "messages": "$messages"},
                }
            ],
        },
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.reply"}]},
        "session": {"id": {"jsonpath": "$.conversation_id"}, "history": history},
    }


def stream_spec(base: str, kind: str) -> dict[str, Any]:
    """The streaming bots: SSE in OpenAI's chunk shape, or NDJSON `{"delta"}` lines."""
    return {
        "request": {
            "url": f"{base}/bot/{kind}",
            "transforms": [{"type": "json", "pattern": {"message": "$content"}}],
        },
        "response": {
            "stream": kind,
            "delta_path": "$.choices[0].delta.content" if kind == "sse" else "$.delta",
        },
    }


# -- steps: a form login -----------------------------------------------------------------------


def test_steps_log_in_once_and_chat_with_the_cookie_and_csrf_token(server: RunningServer) -> None:
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=login_spec(server.url))

    chats = asyncio.run(generator.chat().run_batch([f"q{i}" for i in range(20)]))

    assert [chat.content for chat in chats] == [f"Bot: q{i}" for i in range(20)]
    targets = server.state.targets
    assert (targets.login_pages, targets.logins) == (1, 1)
    assert generator.state["csrf"].startswith("csrf-")
    assert generator.state["sid"].startswith("sid-")


def test_a_session_expiring_mid_run_logs_in_again_exactly_once(server: RunningServer) -> None:
    targets = server.state.targets
    targets.expire_after = 30
    generator = HTTPGenerator(
        model="bot", api_key="hunter2", spec=login_spec(server.url), max_connections=25
    )

    chats = asyncio.run(generator.chat().run_batch([f"q{i}" for i in range(100)]))

    assert [chat.content for chat in chats] == [f"Bot: q{i}" for i in range(100)]
    assert targets.logins == 2  # the first login, and one re-login for every 401 at once
    refused = [chat for chat in targets.chats if chat["sid"] not in targets.sessions]
    assert refused  # some requests did hit the expired session, and were retried


def test_fifty_requests_hitting_a_401_at_once_log_in_once_and_are_each_sent_once_more(
    server: RunningServer,
) -> None:
    targets = server.state.targets
    generator = HTTPGenerator(
        model="bot", api_key="hunter2", spec=login_spec(server.url), max_connections=50
    )

    async def scenario() -> list[jib.Chat]:
        await generator.chat("first").run()
        targets.expire()
        return await generator.chat().run_batch([f"q{i}" for i in range(50)])

    chats = asyncio.run(scenario())

    assert [chat.content for chat in chats] == [f"Bot: q{i}" for i in range(50)]
    assert targets.logins == 2
    assert len(targets.chats) == 1 + 50 + 50  # the first chat, 50 refused, 50 sent once more
    assert all(chat.attempts == 1 for chat in chats)


def test_step_cookies_go_only_to_the_origin_that_set_them(
    server: RunningServer, other_server: RunningServer
) -> None:
    spec = login_spec(server.url)
    spec["request"] = {
        "url": f"{other_server.url}/echo",
        "headers": {"X-CSRF-Token": "{{ state.csrf }}"},
        "transforms": [{"type": "json", "pattern": {"message": "$content"}}],
    }
    spec["response"] = {"transforms": [{"type": "jsonpath", "pattern": "$.body.message"}]}
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=spec)

    chat = asyncio.run(generator.chat("hi").run())

    sent = other_server.state.requests[-1]["headers"]
    assert "cookie" not in sent
    assert sent["x-csrf-token"] == generator.state["csrf"]
    assert chat.content == "hi"


def test_a_failing_login_step_fails_the_request_with_the_step_named(
    server: RunningServer,
) -> None:
    generator = HTTPGenerator(
        model="bot", api_key="wrong-password", spec=login_spec(server.url), max_retries=0
    )

    with pytest.raises(AuthenticationError, match="step 'login' answered 403"):
        asyncio.run(generator.chat("hi").run())
    assert server.state.targets.chats == []  # nothing was sent to the chat endpoint


def test_an_extract_that_finds_nothing_names_the_step_and_value(server: RunningServer) -> None:
    spec = login_spec(server.url)
    spec["steps"][0]["extract"]["csrf"] = {"regex": 'name="token" value="([^"]+)"'}
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=spec, max_retries=0)

    with pytest.raises(ProcessingError, match="step 'login page': extract 'csrf' \\(regex"):
        asyncio.run(generator.chat("hi").run())


def test_step_values_are_kept_out_of_errors(server: RunningServer) -> None:
    spec = login_spec(server.url)
    spec["response"]["valid_status_codes"] = [201]  # every answer is an error quoting the body
    spec["response"]["transforms"] = []
    spec["request"]["url"] = f"{server.url}/echo"
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=spec, max_retries=0)

    with pytest.raises(jib.errors.ProviderError) as raised:
        asyncio.run(generator.chat("hi").run())

    assert generator.state["sid"] not in str(raised.value)
    assert generator.state["csrf"] not in str(raised.value)


def test_steps_are_data_they_round_trip_through_identifiers(server: RunningServer) -> None:
    generator = HTTPGenerator(model="bot", spec=login_spec(server.url))

    again = jib.get_generator(generator.to_identifier())

    assert again == generator
    assert isinstance(again, HTTPGenerator) and again.spec is not None
    assert again.spec.steps[1].extract["sid"].cookie == "sid"
    assert again.spec.steps[0].rerun_on == [401]


def test_a_stored_specs_steps_reach_only_hosts_the_user_allowed() -> None:
    spec = login_spec("http://127.0.0.1:9")
    spec["steps"][1]["request"]["url"] = "https://collector.example.net/login"
    identifier = HTTPGenerator(model="bot", spec=spec).to_identifier()
    identifier += ",api_key=env:OPENAI_API_KEY"

    with pytest.raises(UntrustedIdentifierError, match=r"collector\.example\.net.*steps\[1\]"):
        jib.get_generator(identifier, trusted=TrustPolicy())
    allowed = TrustPolicy(allow_hosts={"collector.example.net"})
    assert isinstance(jib.get_generator(identifier, trusted=allowed), HTTPGenerator)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extract": {"x": {"regex": "a", "cookie": "b"}}}, "exactly one of"),
        ({"extract": {"x": {}}}, "exactly one of"),
        ({"extract": {"1x": {"cookie": "sid"}}}, "must be a template name"),
        ({"extract": {"x": {"regex": "(unclosed"}}}, "steps\\[0\\].extract\\['x'\\]"),
        ({"rerun_on": [99]}, "not an HTTP status"),
        ({"request": {"url": "{{ broken"}}, "steps\\[0\\].request.url"),
    ],
)
def test_a_bad_step_is_refused_when_the_spec_is_read(change: dict[str, Any], message: str) -> None:
    step = {"name": "s", "request": {"url": "http://127.0.0.1:9/x"}, **change}

    with pytest.raises(pydantic.ValidationError, match=message):
        HTTPSpec.model_validate({"request": {"url": "http://127.0.0.1:9/"}, "steps": [step]})


def test_two_steps_may_not_share_a_name() -> None:
    step = {"name": "login", "request": {"url": "http://127.0.0.1:9/x"}}

    with pytest.raises(pydantic.ValidationError, match="'login' is used twice"):
        HTTPSpec.model_validate({"request": {"url": "http://127.0.0.1:9/"}, "steps": [step, step]})


# -- sessions: a conversation the server keeps ------------------------------------------------


def test_a_continued_chat_sends_its_conversation_id_and_only_the_new_message(
    server: RunningServer,
) -> None:
    generator = HTTPGenerator(model="bot", spec=conversation_spec(server.url))

    async def five_turns() -> jib.Chat:
        chat = await generator.chat("turn one").run()
        for number in ["two", "three", "four", "five"]:
            chat = await chat.continue_(f"turn {number}").run()
        return chat

    chat = asyncio.run(five_turns())

    turns = server.state.targets.turns
    first_id = chat.metadata["session"]["id"]
    assert [turn["conversation_id"] for turn in turns] == ["", *[first_id] * 4]
    assert [len(turn["messages"]) for turn in turns] == [1] * 5
    assert chat.content == "turn 5: turn five (9 kept)"
    assert chat.metadata["session"] == {"id": first_id, "origin": server.url}
    assert "session" not in chat.extra

    other = asyncio.run(generator.chat("a new chat").run())
    assert other.metadata["session"]["id"] != first_id


def test_history_client_sends_the_whole_conversation_with_the_id(server: RunningServer) -> None:
    generator = HTTPGenerator(model="bot", spec=conversation_spec(server.url, history="client"))

    async def two_turns() -> jib.Chat:
        chat = await generator.chat("one").run()
        return await chat.continue_("two").run()

    asyncio.run(two_turns())

    turns = server.state.targets.turns
    assert [len(turn["messages"]) for turn in turns] == [1, 3]
    assert turns[0]["conversation_id"] == ""
    assert turns[1]["conversation_id"].startswith("conv-")


def test_a_session_id_is_not_sent_to_another_origin(
    server: RunningServer, other_server: RunningServer
) -> None:
    first = HTTPGenerator(model="bot", spec=conversation_spec(server.url))
    elsewhere = HTTPGenerator(model="bot", spec=conversation_spec(other_server.url))

    async def switch() -> jib.Chat:
        chat = await first.chat("one").run()
        # The chat continued on another generator, whose target is another origin.
        return (
            await elsewhere.chat([*chat.all, jib.Message("user", "two")])
            .meta(**chat.metadata)
            .run()
        )

    chat = asyncio.run(switch())

    assert other_server.state.targets.turns[0]["conversation_id"] == ""
    assert len(other_server.state.targets.turns[0]["messages"]) == 3  # no id: the whole chat
    assert chat.metadata["session"]["origin"] == other_server.url


# -- streams -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_a_stream_gives_each_delta_as_it_comes(server: RunningServer, kind: str) -> None:
    targets = server.state.targets
    targets.hold_last = True
    generator = HTTPGenerator(model="bot", spec=stream_spec(server.url, kind))

    async def read() -> tuple[list[str], bool, jib.Chat]:
        stream = generator.chat("hello").stream()
        deltas: list[str] = []
        last_sent_at_first = True
        async for delta in stream:
            if not deltas:
                last_sent_at_first = targets.last_sent.is_set()
                targets.release.set()
            deltas.append(delta)
        return deltas, last_sent_at_first, stream.chat

    deltas, last_sent_at_first, chat = asyncio.run(read())

    assert deltas == ["You ", "said: ", "hello"]
    assert last_sent_at_first is False
    assert chat.content == "You said: hello"
    assert chat.extra["first_delta_ms"] > 0
    assert chat.extra["first_delta_ms"] <= chat.latency_ms


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_a_streaming_spec_answers_a_batch_whole(server: RunningServer, kind: str) -> None:
    generator = HTTPGenerator(model="bot", spec=stream_spec(server.url, kind))

    chats = asyncio.run(generator.chat().run_batch(["a", "b"]))

    assert [chat.content for chat in chats] == ["You said: a", "You said: b"]


def test_a_stream_whose_pieces_are_not_json_is_a_malformed_response(server: RunningServer) -> None:
    spec = stream_spec(server.url, "ndjson")
    spec["request"]["url"] = f"{server.url}/text"
    generator = HTTPGenerator(model="bot", spec=spec, max_retries=0)

    with pytest.raises(jib.errors.MalformedResponseError, match="delta_path"):
        asyncio.run(generator.chat("hi").run())


def test_delta_path_needs_a_stream() -> None:
    with pytest.raises(pydantic.ValidationError, match="set stream"):
        HTTPSpec.model_validate(
            {"request": {"url": "http://127.0.0.1:9/"}, "response": {"delta_path": "$.d"}}
        )


def test_sessions_and_streams_round_trip_through_identifiers(server: RunningServer) -> None:
    spec = {**stream_spec(server.url, "sse"), "session": conversation_spec(server.url)["session"]}
    generator = HTTPGenerator(model="bot", spec=spec)

    again = jib.get_generator(generator.to_identifier())

    assert again == generator
    assert isinstance(again, HTTPGenerator) and again.spec is not None
    assert again.spec.response.stream == "sse"
    assert again.spec.session is not None and again.spec.session.history == "server"


def test_steps_extract_from_json_headers_and_cookies(server: RunningServer) -> None:
    spec = {
        "steps": [
            {
                "name": "token",
                "request": {"url": f"{server.url}/token"},
                "extract": {"token": {"jsonpath": "$.access_token"}},
            },
            {
                "name": "trace",
                "request": {"url": f"{server.url}/headers", "method": "GET"},
                "extract": {"trace": {"header": "x-request-id"}, "c": {"cookie": "sid"}},
            },
        ],
        "request": {
            "url": f"{server.url}/echo",
            "headers": {
                "Authorization": "Bearer {{ state.token }}",
                "X-Trace": "{{ state.trace }}",
            },
            "transforms": [{"type": "json", "pattern": {"q": "$content"}}],
        },
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.headers"}]},
    }
    generator = HTTPGenerator(model="bot", spec=spec)

    chat = asyncio.run(generator.chat("hi").run())

    assert generator.state == {"token": "token-1", "trace": "req-1", "c": "secret-cookie"}
    sent = server.state.requests[-1]["headers"]
    assert sent["authorization"] == "Bearer token-1"
    assert sent["x-trace"] == "req-1"
    assert sent["cookie"] == "sid=secret-cookie"  # set by a step, for this origin
    assert chat.content.startswith("{")


def test_a_step_template_beyond_its_budget_fails_before_anything_is_sent(
    server: RunningServer,
) -> None:
    spec = login_spec(server.url)
    spec["steps"][1]["request"]["transforms"] = [
        {
            "type": "jinja",
            "pattern": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}"
            "{% endfor %}",
        }
    ]
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=spec, max_retries=0)

    with pytest.raises(jib.errors.BudgetExceededError):
        asyncio.run(generator.chat("hi").run())
    assert server.state.targets.logins == 0
    assert server.state.targets.chats == []


def test_a_streaming_spec_reads_a_whole_json_answer_by_its_transforms(
    server: RunningServer,
) -> None:
    spec = {
        "request": {
            "url": f"{server.url}/v1/chat/completions",
            "transforms": [{"type": "json", "pattern": {"messages": "$messages"}}],
        },
        "response": {
            "stream": "sse",
            "delta_path": "$.choices[0].delta.content",
            "transforms": [{"type": "jsonpath", "pattern": "$.choices[0].message.content"}],
        },
    }
    generator = HTTPGenerator(model="bot", spec=spec)

    async def read() -> tuple[list[str], jib.Chat]:
        stream = generator.chat("hi").stream()
        return [delta async for delta in stream], stream.chat

    deltas, chat = asyncio.run(read())

    assert deltas == ["You said: hi"]
    assert chat.content == "You said: hi"


def test_a_stream_answering_an_error_status_fails_with_it(server: RunningServer) -> None:
    spec = stream_spec(server.url, "sse")
    spec["request"]["url"] = f"{server.url}/status/503"
    generator = HTTPGenerator(model="bot", spec=spec, max_retries=0)

    async def read() -> None:
        async for _ in generator.chat("hi").stream():
            pass

    with pytest.raises(jib.errors.ServerError, match="status 503 body"):
        asyncio.run(read())


def test_a_stream_behind_a_login_runs_the_steps_first(server: RunningServer) -> None:
    spec = {**stream_spec(server.url, "sse"), "steps": login_spec(server.url)["steps"]}
    generator = HTTPGenerator(model="bot", api_key="hunter2", spec=spec)

    async def read() -> list[str]:
        return [delta async for delta in generator.chat("hello").stream()]

    assert asyncio.run(read()) == ["You ", "said: ", "hello"]
    assert server.state.targets.logins == 1
