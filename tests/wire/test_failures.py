"""One table of transport failures, fed to `openai!` and `http!` alike: both providers send
through the one wire, so each failure is the same jib error, equally retryable, on both."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from jib import (
    GenerateParams,
    MalformedResponseError,
    ProcessingError,
    ProviderConnectionError,
    ProviderTimeoutError,
)
from jib.errors import JibError
from jib.generator import Generator
from jib.generator.http import HTTPGenerator
from jib.generator.openai import OpenAIGenerator
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    closed_port,
    http_answer,
    serve_script,
)

KEY = "sk-wire-table-0123456789"
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}


def openai_generator(base: str, **settings: object) -> Generator:
    return OpenAIGenerator(model="m", api_base=f"{base}/v1", api_key=KEY, **settings)


def http_generator(base: str, **settings: object) -> Generator:
    return HTTPGenerator.for_json_endpoint(
        f"{base}/v1/chat/completions",
        request_body={"model": "m", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        api_key=KEY,
        auth={"header": "Authorization", "format": "Bearer {api_key}"},
        **settings,
    )


PROVIDERS = {"openai!": openai_generator, "http!": http_generator}


@dataclass(frozen=True)
class Failure:
    """A way for a request to fail below the provider, and the error it must become."""

    name: str
    error: type[JibError]
    retryable: bool
    setup: Callable[[ExitStack], str]
    """Starts what the failure needs and returns the base URL to send to."""
    settings: tuple[tuple[str, object], ...] = ()


def scripted(script: Callable[[ReceivedRequest, Answer], None]) -> Callable[[ExitStack], str]:
    def setup(stack: ExitStack) -> str:
        return stack.enter_context(serve_script(script)).url

    return setup


def _reset(request: ReceivedRequest, answer: Answer) -> None:
    answer.reset()


def _dropped(request: ReceivedRequest, answer: Answer) -> None:
    answer.close()


def _hang(request: ReceivedRequest, answer: Answer) -> None:
    answer.hang()


def _cut_body(request: ReceivedRequest, answer: Answer) -> None:
    whole = http_answer(200, ANSWER)  # declares its whole length, then stops short of it
    answer.write(whole[:-5])
    answer.close()


def _too_large(request: ReceivedRequest, answer: Answer) -> None:
    answer.write(http_answer(200, {**ANSWER, "padding": "x" * 5000}))


def _not_http(request: ReceivedRequest, answer: Answer) -> None:
    answer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    answer.close()


def _redirect_elsewhere(stack: ExitStack) -> str:
    elsewhere = stack.enter_context(serve_script(lambda r, a: a.write(http_answer(200, ANSWER))))

    def redirect(request: ReceivedRequest, answer: Answer) -> None:
        location = f"{elsewhere.url}/v1/chat/completions"
        answer.write(http_answer(307, "", headers={"Location": location}))

    return stack.enter_context(serve_script(redirect)).url


FAILURES = [
    Failure(
        "refused", ProviderConnectionError, True, lambda _: f"http://127.0.0.1:{closed_port()}"
    ),
    Failure("reset", ProviderConnectionError, True, scripted(_reset)),
    Failure("dropped", ProviderConnectionError, True, scripted(_dropped)),
    Failure("cut body", ProviderConnectionError, True, scripted(_cut_body)),
    Failure("not HTTP", MalformedResponseError, True, scripted(_not_http)),
    Failure("timeout", ProviderTimeoutError, True, scripted(_hang)),
    Failure("invalid URL", ProcessingError, False, lambda _: "http://127.0.0.1:99999"),
    Failure(
        "too large",
        ProcessingError,
        False,
        scripted(_too_large),
        (("max_response_bytes", 1000),),
    ),
    Failure("redirect to another origin", ProcessingError, False, _redirect_elsewhere),
]


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: failure.name)
async def test_each_transport_failure_is_the_same_jib_error_on_both_providers(
    failure: Failure,
) -> None:
    seen: dict[str, BaseException | None] = {}
    for provider, build in PROVIDERS.items():
        with ExitStack() as stack:
            base = failure.setup(stack)
            generator = build(base, max_retries=0, **dict(failure.settings))
            chat = (
                await generator.chat("hi")
                .with_(GenerateParams(timeout=0.5))
                .run(on_failed="include")
            )
            seen[provider] = chat.error
    for provider, error in seen.items():
        assert type(error) is failure.error, f"{provider}: {error!r}"
        assert getattr(error, "retryable", False) is failure.retryable, provider
        assert KEY not in repr(error) and KEY not in str(error.__cause__), provider


async def test_a_dropped_connection_is_retried_and_the_retry_succeeds() -> None:
    calls = []

    def once_dropped(request: ReceivedRequest, answer: Answer) -> None:
        calls.append(request.path)
        if len(calls) % 2:
            answer.close()
        else:
            answer.write(http_answer(200, ANSWER))

    for build in PROVIDERS.values():
        with serve_script(once_dropped) as server:
            chat = await build(server.url, retry_backoff=0).chat("hi")
            assert chat.content == "ok" and chat.last.content == "ok"
    assert len(calls) == 4
