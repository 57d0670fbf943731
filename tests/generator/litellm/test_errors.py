"""Failures through LiteLLMGenerator arrive as jib's normalized provider errors.

The fault server answers chosen HTTP errors in OpenAI's JSON shape; the Ollama-protocol server
answers them in Ollama's. `max_retries=0` turns off jib's retries (LiteLLM's and the OpenAI
SDK's own are always off), so each test sees one request per item.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import jib
from jib._secrets import RedactedError
from jib.generator.litellm import LiteLLMGenerator
from tests.support.fault_server import RunningFaultServer
from tests.support.ollama_server import RunningOllama
from tests.support.openai_server import free_port

SECRET = "sk-live-abcdef0123456789secret"

CASES = [
    ("fail:401", jib.AuthenticationError, 401, False),
    ("fail:429", jib.RateLimitError, 429, True),
    ("fail:400-context", jib.ContextLengthError, 400, False),
    ("fail:500", jib.ServerError, 500, True),
]


def _generator(server: RunningFaultServer, key: str = SECRET) -> jib.Generator:
    return jib.get_generator(f"openai/stub,api_base={server.url},api_key={key},max_retries=0")


@pytest.mark.parametrize(("prompt", "error_type", "status", "retryable"), CASES)
async def test_http_errors_become_normalized_jib_errors(
    fault_server: RunningFaultServer,
    prompt: str,
    error_type: type[jib.ProviderError],
    status: int,
    retryable: bool,
) -> None:
    chat = await _generator(fault_server).chat(prompt).run(on_failed="include")

    assert chat.failed
    assert type(chat.error) is error_type
    assert isinstance(chat.error, jib.ProviderError)
    assert chat.error.status_code == status
    assert chat.error.retryable is retryable
    assert chat.error.provider == "openai/stub"
    # The cause stands in for LiteLLM's exception, its text redacted (tests/security).
    cause = chat.error.__cause__
    assert isinstance(cause, RedactedError)
    assert cause.type_name.startswith("litellm.")
    assert len(fault_server.state.requests) == 1


async def test_errors_are_raised_with_on_failed_raise(fault_server: RunningFaultServer) -> None:
    with pytest.raises(jib.RateLimitError, match="Rate limit reached") as caught:
        await _generator(fault_server).chat("fail:429").run()

    assert caught.value.retryable


async def test_context_length_error_is_a_bad_request(fault_server: RunningFaultServer) -> None:
    with pytest.raises(jib.BadRequestError, match="maximum context length"):
        await _generator(fault_server).chat("fail:400-context").run()


async def test_batch_with_on_failed_include_keeps_every_other_result(
    fault_server: RunningFaultServer,
) -> None:
    prompts = ["first", "fail:401", "second", "fail:429", "fail:400-context", "fail:500", "third"]

    chats = await _generator(fault_server).chat().run_batch(prompts, on_failed="include")

    assert [chat.content for chat in chats if not chat.failed] == ["first", "second", "third"]
    assert [type(chat.error) for chat in chats if chat.failed] == [
        jib.AuthenticationError,
        jib.RateLimitError,
        jib.ContextLengthError,
        jib.ServerError,
    ]


async def test_batch_with_on_failed_skip_drops_failures(fault_server: RunningFaultServer) -> None:
    chats = await _generator(fault_server).chat().run_batch(["ok", "fail:500"], on_failed="skip")

    assert [chat.content for chat in chats] == ["ok"]


async def test_api_key_never_appears_in_errors_records_reprs_or_logs(
    fault_server: RunningFaultServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    generator = _generator(fault_server)
    caplog.set_level(logging.DEBUG)  # LiteLLM logs its requests at DEBUG

    chat = await generator.chat("fail:401").run(on_failed="include")

    # The server did get the key, and echoed it back in its error message.
    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert isinstance(chat.error, jib.AuthenticationError)
    assert "Incorrect API key provided" in str(chat.error)
    shown = [
        str(chat.error),
        repr(chat.error),
        chat.error.message,
        chat.to_json(),
        repr(chat),
        repr(generator),
        str(generator),
        generator.to_identifier(),
        caplog.text,
        *capsys.readouterr(),
    ]
    for text in shown:
        assert SECRET not in text
        assert SECRET[:12] not in text  # not even the masked fragment OpenAI-style servers echo
        assert SECRET[-8:] not in text


async def test_api_key_from_environment_reference_is_sent(
    fault_server: RunningFaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIB_TEST_LITELLM_KEY", SECRET)
    generator = _generator(fault_server, key="env:JIB_TEST_LITELLM_KEY")

    chat = await generator.chat("hello").run()

    assert chat.content == "hello"
    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert "api_key=env:JIB_TEST_LITELLM_KEY" in generator.to_identifier()


async def test_missing_environment_key_fails_with_a_clear_error(
    fault_server: RunningFaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIB_TEST_LITELLM_MISSING", raising=False)
    generator = _generator(fault_server, key="env:JIB_TEST_LITELLM_MISSING")

    with pytest.raises(jib.InvalidGeneratorError, match="JIB_TEST_LITELLM_MISSING"):
        await generator.chat("hello").run()

    assert fault_server.state.requests == []


async def test_unreachable_server_is_a_retryable_connection_error() -> None:
    generator = LiteLLMGenerator(
        model="openai/stub",
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        api_key=SECRET,
        max_retries=0,
    )

    chat = await generator.chat("hello").run(on_failed="include")

    assert type(chat.error) is jib.ProviderConnectionError
    assert chat.error.retryable
    assert SECRET not in str(chat.error)


async def test_slow_server_past_timeout_is_a_retryable_timeout(
    fault_server: RunningFaultServer,
) -> None:
    fault_server.state.reset(delay=2.0)
    params = jib.GenerateParams(timeout=0.3)

    chat = await _generator(fault_server).chat("hello", params).run(on_failed="include")

    assert type(chat.error) is jib.ProviderTimeoutError
    assert chat.error.retryable


@pytest.mark.parametrize("prefix", ["ollama_chat", "ollama"])
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, jib.AuthenticationError),
        (429, jib.RateLimitError),
        (400, jib.BadRequestError),
        (500, jib.ServerError),
        (503, jib.ServerError),
        (504, jib.ProviderTimeoutError),
    ],
)
async def test_ollama_errors_are_classified_by_http_status(
    ollama: RunningOllama, prefix: str, status: int, error_type: type[jib.ProviderError]
) -> None:
    generator = jib.get_generator(f"{prefix}/tiny,api_base={ollama.url}")

    chat = await generator.chat(f"fail:{status}").run(on_failed="include")

    assert type(chat.error) is error_type
    assert chat.error.status_code == status
    assert chat.error.retryable is (error_type in jib.RETRYABLE_ERRORS)


async def test_answer_without_choices_is_a_malformed_response(
    fault_server: RunningFaultServer,
) -> None:
    # Read by the one OpenAI reader, as on openai!: retried, then reported as malformed.
    chat = await _generator(fault_server).chat("fail:no-choices").run(on_failed="include")

    assert type(chat.error) is jib.MalformedResponseError
    assert chat.error.retryable
    assert "no choices" in str(chat.error)
    assert chat.error.provider == "openai/stub"


class _WrapperGaveUp(Exception):
    """An exception of the user's own, raised by a wrapper."""


def _give_up_on_b(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(messages: Any, params: Any) -> Any:
        if messages[-1].content == "b":
            raise _WrapperGaveUp("not b")
        return await call(messages, params)

    return wrapped


async def test_exceptions_of_a_wrapper_are_left_for_catch_to_judge(
    fault_server: RunningFaultServer,
) -> None:
    generator = _generator(fault_server).wrap(_give_up_on_b)

    caught = await generator.chat().catch(_WrapperGaveUp).run_batch(["a", "b"], on_failed="include")
    with pytest.raises(_WrapperGaveUp, match="not b"):  # not a failure jib records by itself
        await generator.chat().run_batch(["a", "b"], on_failed="include")

    assert caught[0].content == "a"
    assert type(caught[1].error) is _WrapperGaveUp
