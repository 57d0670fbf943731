"""HTTPGenerator against unreliable peers: retries, timeouts, bad bodies, size limits, redirects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import jib
from jib import (
    ProcessingError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from jib.errors import MalformedResponseError
from jib.generator.http import HTTPGenerator
from tests.generator.http.server import RunningServer


def endpoint(url: str, **kwargs: Any) -> HTTPGenerator:
    kwargs.setdefault("retry_backoff", 0.001)
    return HTTPGenerator.for_json_endpoint(
        url,
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        **kwargs,
    )


async def failure(generator: HTTPGenerator, text: str = "x", **params: Any) -> BaseException:
    chat = await asyncio.wait_for(
        generator.chat(text).with_(**params).run(on_failed="include"), timeout=30
    )
    assert chat.failed and chat.error is not None
    return chat.error


async def test_rate_limit_with_retry_after_then_success(server: RunningServer) -> None:
    generator = endpoint(f"{server.url}/flaky/a?retry_after=1")
    chat = await asyncio.wait_for(generator.chat("x").run(), timeout=30)
    assert chat.content == "finally"
    first, second = server.state.requests
    # The backoff alone would wait about a millisecond; Retry-After asked for a second.
    assert second["time"] - first["time"] >= 0.9


async def test_retry_after_beyond_max_retry_wait_fails_at_once(server: RunningServer) -> None:
    generator = endpoint(f"{server.url}/flaky/b?retry_after=3600", max_retry_wait=5)
    error = await failure(generator)
    assert isinstance(error, RateLimitError)
    assert error.status_code == 429
    assert "Retry-After 3600s exceeds max_retry_wait=5s" in str(error)
    assert len(server.state.requests) == 1


async def test_repeated_503_until_the_bound_then_a_clear_error(server: RunningServer) -> None:
    generator = endpoint(f"{server.url}/status/503?body={'overloaded ' * 200}", max_retries=2)
    error = await failure(generator)
    assert isinstance(error, ServerError)
    assert error.retryable
    assert error.status_code == 503
    assert error.message.startswith("overloaded overloaded")
    assert "more characters" in error.message  # the body is truncated
    assert len(error.message) < 700
    assert len(server.state.requests) == 3  # the first try and two retries


async def test_client_errors_are_not_retried(server: RunningServer) -> None:
    error = await failure(endpoint(f"{server.url}/status/400"))
    assert isinstance(error, jib.BadRequestError)
    assert len(server.state.requests) == 1


async def test_connection_refused_is_retried_then_a_connection_error(closed_url: str) -> None:
    error = await failure(endpoint(f"{closed_url}/v1/chat", max_retries=2))
    assert isinstance(error, ProviderConnectionError)
    assert "after 3 attempts" in str(error)


async def test_server_that_never_answers_times_out(silent_url: str) -> None:
    generator = endpoint(f"{silent_url}/v1/chat")
    error = await failure(generator, timeout=0.3)
    assert isinstance(error, ProviderTimeoutError)
    assert "within 0.3s" in str(error)


async def test_spec_timeout_applies_when_params_set_none(silent_url: str) -> None:
    generator = endpoint(f"{silent_url}/v1/chat", timeout=0.2)
    assert isinstance(await failure(generator), ProviderTimeoutError)


async def test_malformed_json_is_retried_then_a_retryable_malformed_response_error(
    server: RunningServer,
) -> None:
    error = await failure(endpoint(f"{server.url}/malformed", max_retries=2))
    assert isinstance(error, MalformedResponseError)
    assert error.retryable
    assert error.attempts == 3
    assert "not the JSON the spec expects" in str(error)
    assert "gave up after 3 attempts, max_retries=2" in str(error)


@pytest.mark.parametrize("path", ["big", "big-stream"])
async def test_oversized_body_is_a_processing_error(server: RunningServer, path: str) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/{path}?n=50000", max_response_bytes=10_000
    )
    error = await failure(generator)
    assert isinstance(error, ProcessingError)
    assert "max_response_bytes=10000" in str(error)


async def test_body_within_the_limit_is_read(server: RunningServer) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/big-stream?n=5000", max_response_bytes=10_000
    )
    assert (await generator.complete("x")).content == "y" * 5000


async def test_catastrophic_regex_does_not_block_the_event_loop(server: RunningServer) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/status/200?body={'a' * 60}!", response_pattern=r"(a|aa)+$"
    )
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    try:
        error = await failure(generator)
    finally:
        beating.cancel()
    assert isinstance(error, ProcessingError)
    assert "took longer than" in str(error)
    assert ticks >= 10  # the loop kept running while the regex was matched


async def test_redirect_to_another_origin_drops_credentials(
    server: RunningServer, other_server: RunningServer
) -> None:
    # A 302 after a POST continues as a GET: no body to hold back (see tests/security).
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/redirect?to={other_server.url}/headers&status=302",
        request_body={"q": "$content"},
        response={"content_path": "$.headers"},
        api_key="sk-redirect-secret",
        auth={"format": "Bearer {api_key}"},
        headers={"X-Api-Key": "{{ api_key }}", "Accept": "application/json"},
    )
    received = json.loads((await generator.chat("x")).content)
    assert "authorization" not in received
    assert "x-api-key" not in received
    assert received["accept"] == "application/json"
    assert server.state.requests[0]["headers"]["authorization"] == "Bearer sk-redirect-secret"


async def test_redirect_on_the_same_origin_keeps_credentials(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/redirect?to=/headers",
        request_body={"q": "$content"},
        response={"content_path": "$"},
        api_key="sk-same",
        auth={"format": "Bearer {api_key}"},
    )
    received = json.loads((await generator.chat("x")).content)
    assert received["headers"]["authorization"] == "Bearer sk-same"
    assert received["method"] == "POST"  # 307 keeps the method and body
    assert json.loads(received["body"]) == {"q": "x"}


async def test_303_redirect_becomes_get_without_body(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/redirect?to=/headers&status=303",
        request_body={"q": "$content"},
        response={"content_path": "$.method"},
    )
    assert (await generator.chat("x")).content == "GET"


async def test_redirect_loop_stops_at_max_redirects(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/redirect?to=/redirect%3Fto%3D/headers",
        request_body={"q": "$content"},
        max_redirects=1,
    )
    error = await failure(generator)
    assert isinstance(error, jib.ProviderError)
    assert error.status_code == 307
