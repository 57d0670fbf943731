"""`openai!` against an OpenAI-protocol server on 127.0.0.1: bodies, keys, errors, retries.

The fault server speaks OpenAI's chat and text completion routes and answers chosen errors in
OpenAI's JSON shape (see tests/support/fault_server.py). End-to-end tests against the real
`transformers serve`, shared with the LiteLLM path, are in
tests/generator/test_openai_compatible_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import traceback

import pytest

import jib
from jib.generator.openai import OpenAIGenerator
from tests.support.fault_server import RunningFaultServer
from tests.support.openai_server import free_port

SECRET = "sk-live-abcdef0123456789secret"


def native(server: RunningFaultServer, extra: str = "") -> OpenAIGenerator:
    generator = jib.get_generator(f"openai!stub,api_base={server.url},api_key={SECRET}{extra}")
    assert isinstance(generator, OpenAIGenerator)
    return generator


async def test_chat_sends_the_openai_body_and_reads_answer_usage_and_stop_reason(
    fault_server: RunningFaultServer,
) -> None:
    generator = native(fault_server, ",temperature=0.5,max_tokens=2,stop=END")
    chat = await generator.chat([{"role": "system", "content": "be brief"}, "one two three"]).run()

    assert chat.content == "be brief"  # the stub echoes the prompt's words, cut at max_tokens
    assert chat.stop_reason == "length"
    assert chat.usage is not None and chat.usage.output_tokens == 2
    assert chat.extra["response_id"] == "cmpl-stub"
    body = fault_server.state.requests[0]
    assert fault_server.state.paths[0] == "/v1/chat/completions"
    assert body == {
        "model": "stub",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "one two three"},
        ],
        "temperature": 0.5,
        "max_tokens": 2,
        "stop": ["END"],
    }
    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"


async def test_text_completion_goes_to_the_completions_route(
    fault_server: RunningFaultServer,
) -> None:
    completion = await native(fault_server).complete("the quick fox").run()

    assert completion.generated == "the quick fox"
    assert completion.stop_reason == "stop"
    assert fault_server.state.paths == ["/v1/completions"]
    assert fault_server.state.requests[0] == {"model": "stub", "prompt": "the quick fox"}


async def test_extra_fields_pass_through_untouched_and_timeout_stays_out_of_the_body(
    fault_server: RunningFaultServer,
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    params = jib.GenerateParams(
        timeout=30, extra={"tools": tools, "response_format": {"type": "json_object"}}
    )
    await native(fault_server).chat("hi", params).run()

    body = fault_server.state.requests[0]
    assert body["tools"] == tools
    assert body["response_format"] == {"type": "json_object"}
    assert "timeout" not in body


async def test_the_key_comes_from_openai_api_key_when_not_given(
    fault_server: RunningFaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    await jib.get_generator(f"openai!stub,api_base={fault_server.url}").chat("hi").run()
    monkeypatch.delenv("OPENAI_API_KEY")
    await jib.get_generator(f"openai!stub,api_base={fault_server.url}").chat("hi").run()

    first, second = fault_server.state.headers
    assert first["authorization"] == "Bearer sk-from-env"
    assert "authorization" not in second  # local servers want no key at all


@pytest.mark.parametrize(
    ("prompt", "error_type", "status", "retryable"),
    [
        ("fail:401", jib.AuthenticationError, 401, False),
        ("fail:429", jib.RateLimitError, 429, True),
        ("fail:400-context", jib.ContextLengthError, 400, False),
        ("fail:500", jib.ServerError, 500, True),
    ],
)
async def test_error_bodies_become_normalized_errors_with_the_servers_message(
    fault_server: RunningFaultServer,
    prompt: str,
    error_type: type[jib.ProviderError],
    status: int,
    retryable: bool,
) -> None:
    chat = await native(fault_server, ",max_retries=0").chat(prompt).run(on_failed="include")

    assert type(chat.error) is error_type
    assert isinstance(chat.error, jib.ProviderError)
    assert chat.error.status_code == status
    assert chat.error.retryable is retryable
    assert chat.error.provider == "openai!stub"
    assert chat.attempts == 1
    assert len(fault_server.state.requests) == 1


async def test_retryable_errors_are_retried_by_default(fault_server: RunningFaultServer) -> None:
    chat = await native(fault_server, ",retry_backoff=0.001").chat("flaky:2:a").run()

    assert chat.content == "flaky:2:a"
    assert chat.attempts == 3
    assert len(fault_server.state.requests) == 3


async def test_an_answer_without_choices_is_a_retryable_malformed_response(
    fault_server: RunningFaultServer,
) -> None:
    generator = native(fault_server, ",max_retries=1,retry_backoff=0.001")
    chat = await generator.chat("fail:no-choices").run(on_failed="include")

    assert type(chat.error) is jib.errors.MalformedResponseError
    assert "no choices" in str(chat.error)
    assert chat.attempts == 2


async def test_the_key_never_shows_in_errors_causes_records_or_logs(
    fault_server: RunningFaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    generator = native(fault_server, ",max_retries=0")
    chat = await generator.chat("fail:401").run(on_failed="include")

    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert chat.error is not None
    shown = [
        "".join(traceback.format_exception(chat.error)),
        repr(chat.error),
        chat.to_json(),
        repr(generator),
        generator.to_identifier(),
        caplog.text,
    ]
    for text in shown:
        assert SECRET not in text


async def test_an_unreachable_server_is_a_retryable_connection_error() -> None:
    generator = jib.get_generator(
        f"openai!stub,api_base=http://127.0.0.1:{free_port()}/v1,max_retries=1,retry_backoff=0"
    )
    chat = await generator.chat("hi").run(on_failed="include")

    assert type(chat.error) is jib.ProviderConnectionError
    assert chat.error.retryable
    assert chat.attempts == 2


async def test_a_slow_server_fails_with_the_timeout(fault_server: RunningFaultServer) -> None:
    fault_server.state.reset(delay=5.0)
    chat = await native(fault_server).chat("hi").with_(timeout=0.3).run(on_failed="include")

    assert type(chat.error) is jib.ProviderTimeoutError
    assert "no answer within 0.3s" in str(chat.error)


async def test_the_generator_identifier_round_trips_without_the_key(
    fault_server: RunningFaultServer,
) -> None:
    generator = native(fault_server, ",max_connections=4,stream_usage=False")
    identifier = generator.to_identifier()

    assert identifier == (
        f"openai!stub,api_base={fault_server.url},stream_usage=False,max_connections=4"
    )
    assert SECRET not in identifier
    rebuilt = jib.get_generator(identifier)
    assert rebuilt.model_dump(exclude={"api_key"}) == generator.model_dump(exclude={"api_key"})
    assert pickle.loads(pickle.dumps(generator)) == generator


async def test_a_generator_reused_across_event_loops_opens_a_session_per_loop(
    fault_server: RunningFaultServer,
) -> None:
    generator = native(fault_server)

    def one_run() -> str:
        return asyncio.run(generator.chat("again").run()).content

    assert await asyncio.to_thread(one_run) == "again"
    assert await asyncio.to_thread(one_run) == "again"
    assert (await generator.chat("here").run()).content == "here"


async def test_a_non_streaming_generator_streams_the_whole_answer_once() -> None:
    stream = jib.get_generator("echo!e").chat("all at once").stream()
    deltas = [delta async for delta in stream]
    assert deltas == ["all at once"]
    assert stream.chat.content == "all at once"


async def test_a_stream_that_fails_raises_or_ends_with_the_failed_chat(
    fault_server: RunningFaultServer,
) -> None:
    generator = native(fault_server, ",max_retries=0")
    with pytest.raises(jib.AuthenticationError):
        async for _ in generator.chat("fail:401").stream():
            pass
    stream = generator.chat("fail:401").stream(on_failed="include")
    assert [delta async for delta in stream] == []
    assert stream.chat.failed and isinstance(stream.chat.error, jib.AuthenticationError)
