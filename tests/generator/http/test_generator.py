"""HTTPGenerator end to end against a real local server: factories, specs, state and hooks."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import pickle
import time
import warnings
from typing import Any

import httpx
import pytest

import jib
import jib.generator.http.spec
from jib import AuthenticationError, BadRequestError, GenerateParams, InvalidGeneratorError
from jib.generator.http import HTTPGenerator
from tests.generator.http.server import RunningServer


def chat_endpoint(server: RunningServer, **kwargs: Any) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        f"{server.url}/v1/chat/completions",
        request_body={"model": "$model", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        **kwargs,
    )


async def test_json_endpoint_chat(server: RunningServer) -> None:
    generator = chat_endpoint(server, model="tiny", api_key="sk-test", auth={})
    chat = await generator.chat("What is 2+2?")
    assert chat.content == "You said: What is 2+2?"
    sent = server.state.requests[-1]
    assert json.loads(sent["body"]) == {
        "model": "tiny",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
    }
    assert sent["headers"]["authorization"] == "sk-test"
    assert sent["headers"]["content-type"] == "application/json"
    assert chat.generated[-1].role == "assistant"


async def test_json_endpoint_accepts_request_keyword_and_auth_format(
    server: RunningServer,
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        url=f"{server.url}/v1/chat/completions",
        request={"messages": "$messages", "temperature": "$params.temperature"},
        response={"content_path": "$.choices[0].message.content"},
        api_key="sk-test",
        auth={"header": "X-Api-Key", "format": "Key {api_key}"},
    )
    chat = await generator.chat("hi").with_(temperature=0.3)
    assert chat.content == "You said: hi"
    sent = server.state.requests[-1]
    assert sent["headers"]["x-api-key"] == "Key sk-test"
    assert json.loads(sent["body"])["temperature"] == 0.3


async def test_json_endpoint_only_needs_url_and_body(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/echo", request_body={"q": "$content"}
    )
    chat = await generator.chat("ping")
    assert json.loads(chat.content)["body"] == {"q": "ping"}


def test_json_endpoint_without_a_body_is_a_clear_error() -> None:
    with pytest.raises(InvalidGeneratorError, match="request body is missing"):
        HTTPGenerator.for_json_endpoint("http://127.0.0.1:9/x")
    with pytest.raises(InvalidGeneratorError, match="not both"):
        HTTPGenerator.for_json_endpoint("http://127.0.0.1:9/x", request_body={}, request={})


async def test_json_endpoint_conversation_and_completion(server: RunningServer) -> None:
    generator = chat_endpoint(server)
    chat = await generator.chat(
        [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello"}]
    )
    assert chat.content == "You said: Hello"
    completion = await generator.complete("Once upon a time")
    assert completion.content == "You said: Once upon a time"


async def test_text_endpoint(server: RunningServer) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/text",
        request_template="Q: {{ content }}",
        response_pattern=r"Answer: (.*)",
    )
    chat = await generator.chat("the sky")
    assert chat.content == "Q: THE SKY"
    assert server.state.requests[-1]["headers"]["content-type"].startswith("text/plain")


async def test_text_endpoint_defaults_to_the_last_message_and_whole_body(
    server: RunningServer,
) -> None:
    generator = HTTPGenerator.for_text_endpoint(url=f"{server.url}/text")
    completion = await generator.complete("abc")
    assert completion.content == "Answer: ABC\nEND"


async def test_full_yaml_spec_with_state(server: RunningServer) -> None:
    spec = f"""
request:
  url: {server.url}/headers
  method: POST
  headers:
    X-Session: "{{{{ state.session_id }}}}"
    X-Model: "{{{{ model }}}}"
  timeout: 5
  transforms:
    - type: jinja
      pattern: "{{{{ role }}}} said {{{{ content }}}}"
response:
  valid_status_codes: [200]
  transforms:
    - type: jsonpath
      pattern: $.body
    - type: jinja
      pattern: "server got: {{{{ result }}}}"
"""
    generator = HTTPGenerator(model="bot", spec=spec, state={"session_id": "abc"})
    chat = await generator.chat("hello")
    assert chat.content == "server got: user said hello"
    headers = server.state.requests[-1]["headers"]
    assert headers["x-session"] == "abc"
    assert headers["x-model"] == "bot"


async def test_session_id_kept_in_state_and_sent_with_each_request(
    server: RunningServer,
) -> None:
    async def keep_session(generator: HTTPGenerator, response: httpx.Response) -> None:
        if response.status_code == 200:
            generator.state["session_id"] = response.json()["session_id"]

    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/session/chat",
        request_body={"session": "{{ state.session_id | default('') }}", "message": "$content"},
        response={"content_path": "$.reply"},
        hook=keep_session,
    )
    replies = [(await generator.chat(text)).content for text in ("one", "two", "three")]
    assert replies == ["turn 1: one", "turn 2: two", "turn 3: three"]
    assert generator.state["session_id"] == "session-1"
    identifier = generator.to_identifier()
    assert "session-1" not in identifier and "hook" not in identifier
    assert jib.get_generator(identifier) == generator  # state and hook are runtime data
    sessions = [json.loads(r["body"])["session"] for r in server.state.requests]
    assert sessions == ["", "session-1", "session-1"]


def _refresh_hook(server: RunningServer) -> Any:
    async def refresh_on_401(generator: HTTPGenerator, response: httpx.Response) -> str | None:
        if response.status_code != 401:
            return None
        sent = response.request.headers.get("authorization")
        async with generator.hook_lock:
            # Another request may have refreshed while this one waited: refresh only if the
            # token this request was sent with is still the current one.
            if sent == f"Bearer {generator.state.get('access_token')}":
                async with httpx.AsyncClient() as client:
                    token = await client.post(f"{server.url}/token", timeout=5)
                generator.state["access_token"] = token.json()["access_token"]
        return "retry"

    return refresh_on_401


def secure_endpoint(server: RunningServer, **kwargs: Any) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        f"{server.url}/secure/chat",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content", "error_path": "$.error.message"},
        auth={"format": "Bearer {{ state.access_token }}"},
        state={"access_token": "expired"},
        hook=_refresh_hook(server),
        **kwargs,
    )


async def test_401_then_refresh_updates_state_and_retries(server: RunningServer) -> None:
    generator = secure_endpoint(server)
    chat = await generator.chat("Ada")
    assert chat.content == "Hello Ada, you are signed in"
    assert generator.state["access_token"] == "token-1"
    auth_sent = [
        r["headers"]["authorization"] for r in server.state.requests if r["path"] != "/token"
    ]
    assert auth_sent == ["Bearer expired", "Bearer token-1"]


async def test_fifty_concurrent_401s_trigger_exactly_one_refresh(server: RunningServer) -> None:
    generator = secure_endpoint(server, max_connections=50)
    chats = await asyncio.wait_for(
        generator.chat("x").run_batch([f"user {i}" for i in range(50)]), timeout=30
    )
    assert [c.content for c in chats] == [f"Hello user {i}, you are signed in" for i in range(50)]
    assert server.state.token_requests == 1


async def test_hook_retry_is_bounded_by_max_retries(server: RunningServer) -> None:
    async def always_retry(generator: HTTPGenerator, response: httpx.Response) -> str:
        return "retry"

    generator = secure_endpoint(server, max_retries=2)
    generator.hook = always_retry
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, AuthenticationError)
    assert chat.error.status_code == 401
    assert "token expired or invalid" in str(chat.error)  # from error_path
    assert len(server.state.requests) == 3


async def test_hook_raise_and_continue(server: RunningServer) -> None:
    async def judge(generator: HTTPGenerator, response: httpx.Response) -> str:
        return "raise" if "forbidden" in response.text else "continue"

    generator = chat_endpoint(server, hook=judge)
    assert (await generator.chat("fine")).content == "You said: fine"
    failed = await generator.chat("forbidden word").run(on_failed="include")
    assert isinstance(failed.error, jib.ProviderError)
    assert failed.error.status_code == 200


async def test_hook_returning_nonsense_or_raising_is_a_processing_error(
    server: RunningServer,
) -> None:
    async def nonsense(generator: HTTPGenerator, response: httpx.Response) -> str:
        return "maybe"

    def broken(generator: HTTPGenerator, response: httpx.Response) -> None:
        raise RuntimeError("hook bug")

    for hook, message in ((nonsense, "the hook returned 'maybe'"), (broken, "hook bug")):
        chat = await chat_endpoint(server, hook=hook).chat("x").run(on_failed="include")
        assert isinstance(chat.error, jib.ProcessingError)
        assert message in str(chat.error)


async def test_invalid_status_raises_with_error_path_and_skips_transforms(
    server: RunningServer,
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/status/404?body=%7B%22error%22%3A%7B%22message%22%3A%22no%20model%22%7D%7D",
        request_body={"q": "$content"},
        response={"content_path": "$.never.reached", "error_path": "$.error.message"},
    )
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, BadRequestError)
    assert chat.error.status_code == 404
    assert chat.error.message == "no model"


async def test_generation_extra_keeps_safe_headers_only(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/headers", request_body={"q": "$content"}
    )
    result = (await generator.generate_messages([[jib.Message("user", "x")]], [GenerateParams()]))[
        0
    ]
    assert isinstance(result, jib.GeneratedMessage)
    headers = {name.lower() for name in result.extra["headers"]}
    assert result.extra["status_code"] == 200
    assert "x-request-id" in headers
    assert not headers & {"set-cookie", "x-auth-token", "authorization", "cookie"}


async def test_batch_returns_failures_per_item(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/echo",
        request_body={"q": "$content"},
        response={"content_path": "$.body.q"},
    )
    spec = generator.spec
    assert spec is not None
    messages = [[jib.Message("user", "a")], [jib.Message("user", "b")]]
    results = await generator.generate_messages(messages, [GenerateParams()] * 2)
    assert [r.message.content for r in results if isinstance(r, jib.GeneratedMessage)] == [
        "a",
        "b",
    ]


async def test_generator_without_spec_fails_clearly() -> None:
    chat = await HTTPGenerator(model="m").chat("x").run(on_failed="include")
    assert isinstance(chat.error, jib.ProcessingError)
    assert "no spec" in str(chat.error)


def test_generator_works_across_event_loops(server: RunningServer) -> None:
    generator = chat_endpoint(server)
    first = asyncio.run(generator.chat("one").run())
    second = asyncio.run(generator.chat("two").run())
    assert (first.content, second.content) == ("You said: one", "You said: two")


async def test_connections_are_reused(server: RunningServer) -> None:
    generator = chat_endpoint(server)
    for text in ("a", "b", "c"):
        await generator.chat(text)
    ports = {r["client_port"] for r in server.state.requests}
    assert len(ports) == 1  # one pooled keep-alive connection served all three
    await generator.aclose()


async def test_chat_reloads_from_its_stored_record(server: RunningServer) -> None:
    generator = chat_endpoint(server, model="stored")
    chat = await generator.chat("persist me")
    restored = jib.Chat.from_json(chat.to_json())
    assert restored.generator == generator
    assert (await restored.generator.chat("again")).content == "You said: again"


async def test_max_connections_caps_requests_in_flight(server: RunningServer) -> None:
    # Answers wait until two requests are in flight: the cap is reached however slowly the
    # client sends, and never passed.
    generator = HTTPGenerator.for_text_endpoint(f"{server.url}/slow?together=2", max_connections=2)
    completions = await generator.complete("").run_batch([str(i) for i in range(6)])
    assert [c.content for c in completions] == ["done"] * 6
    assert server.state.max_in_flight == 2


async def test_min_delay_between_requests_spaces_request_starts(server: RunningServer) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/text", min_delay_between_requests=100, max_connections=1
    )
    await generator.complete("warm up the connection")
    begun = time.monotonic()
    await generator.complete("").run_batch(["a", "b", "c"])
    times = sorted(r["time"] for r in server.state.requests)[1:]
    # The n-th (from 0) goes no sooner than n × 100 ms after the batch began (pacing may hold
    # the first too, after the warm-up); a busy machine only makes arrivals later.
    assert all(t >= begun + n * 0.1 - 1e-6 for n, t in enumerate(times)), (begun, times)


async def test_templates_are_compiled_once_per_spec(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/{{{{ 'v1' }}}}/chat/completions",
        request_body={"model": "{{ model }}", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        headers={"X-Model": "{{ model }}"},
    )
    spec = generator.spec
    assert spec is not None
    compiled = dict(spec._compiled)
    compiles: list[str] = []
    for name in ("compile_jinja", "compile_jsonpath", "compile_regex"):
        original = getattr(jib.generator.http.spec, name)

        def counting(source: str, original: Any = original) -> Any:
            compiles.append(source)
            return original(source)

        monkeypatch.setattr(jib.generator.http.spec, name, counting)
    for text in ("a", "b"):
        assert (await generator.chat(text)).content == f"You said: {text}"
    assert compiles == []  # nothing compiled per request
    assert spec._compiled == compiled  # the same template objects serve every request


def test_pools_close_when_their_event_loop_shuts_down(server: RunningServer) -> None:
    generator = chat_endpoint(server)
    clients: list[Any] = []

    async def run(text: str) -> str:
        chat = await generator.chat(text)
        client = await generator.wire._clients.get()
        clients.append(client)
        assert len(generator.wire) == 1  # one pooled client for this loop
        return chat.content

    gc.collect()  # leftovers of earlier tests (other libraries' clients) warn now, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(run("one")) == "You said: one"
        assert asyncio.run(run("two")) == "You said: two"
        gc.collect()
    first, second = clients
    assert first is not second
    assert first.closed and second.closed
    assert len(generator.wire) == 0  # nothing kept for the closed loops
    # Only what was connected to this test's server: another library's client, left over by an
    # earlier test in this process, may be collected here too.
    port = int(server.url.rsplit(":", 1)[1])
    ours = [
        warning.message
        for warning in caught
        if issubclass(warning.category, ResourceWarning) and _peer_port(warning.source) == port
    ]
    assert ours == []


def _peer_port(source: Any) -> int | None:
    """The remote port of an unclosed transport a ResourceWarning is about, if any."""
    get_extra_info = getattr(source, "get_extra_info", None)
    peer = get_extra_info("peername") if callable(get_extra_info) else None
    return peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None


async def test_concurrent_requests_share_one_capped_pool(server: RunningServer) -> None:
    generator = HTTPGenerator.for_text_endpoint(f"{server.url}/slow", max_connections=3)
    completions = await generator.complete("").run_batch([str(i) for i in range(12)])
    assert [c.content for c in completions] == ["done"] * 12
    ports = {r["client_port"] for r in server.state.requests}
    assert 1 <= len(ports) <= 3  # kept-alive connections reused, never more than the cap
    assert len(generator.wire) == 1
    await generator.aclose()
    assert len(generator.wire) == 0


async def test_cancelled_batch_leaves_no_tasks_and_the_pool_usable(
    server: RunningServer, silent_url: str
) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        "{{ state.base }}/slow", state={"base": silent_url}, max_connections=2
    )
    tasks_before = asyncio.all_tasks()
    batch = asyncio.create_task(generator.complete("").run_batch(["a", "b", "c", "d"]))
    await asyncio.sleep(0.3)
    assert not batch.done()  # stuck on a server that never answers
    client = await generator.wire._clients.get()
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - tasks_before == set()  # nothing left running
    # The pool stays open and the request slots were given back.
    generator.state["base"] = server.url
    completions = await asyncio.wait_for(
        generator.complete("").run_batch(["e", "f", "g"]), timeout=10
    )
    assert [c.content for c in completions] == ["done"] * 3
    assert await generator.wire._clients.get() is client
    assert not client.closed


async def test_used_generator_pickles_and_deep_copies(server: RunningServer) -> None:
    generator = chat_endpoint(server, state={"session_id": "s-1"}, min_delay_between_requests=1)
    await generator.chat("warm up")
    for copied in (pickle.loads(pickle.dumps(generator)), copy.deepcopy(generator)):
        assert copied == generator
        assert copied.state == {"session_id": "s-1"} and copied.state is not generator.state
        assert (await copied.chat("again")).content == "You said: again"
