"""How LiteLLM's exception objects map to jib errors, for cases no local server provokes.

These build LiteLLM's own exception classes (the real library, no mocks) the way LiteLLM raises
them, including the awkward ones: a 429 reported as a connection error, a refused connection
reported as a 500.
"""

from __future__ import annotations

import httpx
import pytest

import jib
from jib._secrets import redact
from jib.generator.litellm._errors import map_litellm_error
from jib.generator.litellm._runtime import import_litellm

litellm = import_litellm()  # as jib imports it: with the bundled cost map, offline


def _map(exc: BaseException, secrets: tuple[str, ...] = ()) -> jib.JibError:
    return map_litellm_error(exc, provider="openai/test", secrets=secrets)


def _raised(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as cause:
            raise outer from cause
    except BaseException as caught:
        return caught


def test_rate_limit_reported_as_connection_error_is_classified_by_its_status() -> None:
    exc = litellm.APIConnectionError(
        message="OllamaException - Client error '429 Too Many Requests', status code 429",
        llm_provider="ollama",
        model="tiny",
    )

    error = _map(exc)

    assert type(error) is jib.RateLimitError
    assert error.status_code == 429
    assert error.retryable


def test_connection_error_without_status_is_a_connection_error() -> None:
    exc = litellm.APIConnectionError(message="connection refused", llm_provider="x", model="m")

    error = _map(exc)

    assert type(error) is jib.ProviderConnectionError
    assert error.status_code is None
    assert error.retryable


def test_refused_connection_reported_as_500_is_a_connection_error() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    outer = litellm.InternalServerError(
        message="Connection error.", llm_provider="openai", model="m"
    )
    exc = _raised(outer, httpx.ConnectError("refused", request=request))

    assert type(_map(exc)) is jib.ProviderConnectionError


def test_timeout_without_server_status_is_a_timeout() -> None:
    outer = litellm.Timeout(message="Request timed out.", model="m", llm_provider="openai")
    exc = _raised(outer, httpx.ReadTimeout("read timed out"))

    error = _map(exc)

    assert type(error) is jib.ProviderTimeoutError
    assert error.retryable


def test_context_window_error_is_a_context_length_error() -> None:
    exc = litellm.ContextWindowExceededError(
        message="too many tokens", model="m", llm_provider="openai"
    )

    error = _map(exc)

    assert type(error) is jib.ContextLengthError
    assert isinstance(error, jib.BadRequestError)
    assert not error.retryable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (litellm.AuthenticationError("bad key", "openai", "m"), jib.AuthenticationError),
        (
            litellm.PermissionDeniedError(
                "no",
                "openai",
                "m",
                httpx.Response(403, request=httpx.Request("POST", "http://127.0.0.1/v1")),
            ),
            jib.AuthenticationError,
        ),
        (litellm.NotFoundError("no model", "m", "openai"), jib.BadRequestError),
        (litellm.ServiceUnavailableError("down", "openai", "m"), jib.ServerError),
        (litellm.RateLimitError("slow down", "openai", "m"), jib.RateLimitError),
    ],
)
def test_litellm_classes_map_by_their_status(
    exc: BaseException, expected: type[jib.ProviderError]
) -> None:
    assert type(_map(exc)) is expected


def test_jib_errors_pass_through_unchanged() -> None:
    error = jib.InvalidGeneratorError("bad")

    assert _map(error) is error


def test_unexpected_exception_becomes_a_provider_error_without_secrets() -> None:
    error = _map(ValueError("broken response for key sk-abcdef123456"), ("sk-abcdef123456",))

    assert type(error) is jib.ProviderError
    assert "sk-abcdef123456" not in str(error)
    assert not error.retryable


def test_long_messages_are_truncated() -> None:
    error = _map(litellm.BadRequestError("x" * 5000, "m", "openai"))

    assert isinstance(error, jib.BadRequestError)
    assert len(error.message) <= 1000
    assert error.message.endswith("...")


@pytest.mark.parametrize(
    "text",
    [
        "Incorrect API key provided: sk-live-abcdef0123456789secret.",
        "Incorrect API key provided: sk-live-****************cret.",
        "Incorrect API key provided: sk-liv*************23456789secret",
        "header was Authorization: Bearer sk-live-abcdef0123456789secret",
        "{'api_key': 'sk-live-abcdef0123456789secret'}",
    ],
)
def test_redact_removes_keys_and_their_masked_fragments(text: str) -> None:
    redacted = redact(text, ["sk-live-abcdef0123456789secret"])

    assert "abcdef0123456789" not in redacted
    assert "sk-liv" not in redacted
    assert "***" in redacted


def test_redact_leaves_text_without_secrets_alone() -> None:
    assert redact("model not found", ["sk-live-abcdef0123456789secret"]) == "model not found"


def test_connection_error_over_an_http_response_is_classified_by_that_status() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/api/chat")
    response = httpx.Response(429, request=request)
    outer = litellm.APIConnectionError(
        message="OllamaException - busy", llm_provider="x", model="m"
    )
    exc = _raised(outer, httpx.HTTPStatusError("busy", request=request, response=response))

    error = _map(exc)

    assert type(error) is jib.RateLimitError
    assert error.status_code == 429
