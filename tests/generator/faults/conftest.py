"""The fault-injection server and the remote providers the fault tests point at it.

`faults` is the server (one per session, `tests/support/fault_injection.py`), reset before and
after each test. `remote` is one remote provider aimed at it, parametrized over every provider
that sends requests of its own:

- `litellm`: the LiteLLM `openai/` path, built from an identifier, on `/v1/chat/completions`
  and `/v1/completions`;
- `openai`: jib's native `openai!` generator, from an identifier, on the same routes;
- `http`: `HTTPGenerator.for_json_endpoint` on the plain JSON endpoint `/plain`;
- `callback`: `jib.testing.CallbackGenerator` whose callback posts to `/plain` with httpx and
  raises jib's errors, as a user's own client code would.

A test that only some providers can take narrows it with
`@pytest.mark.parametrize("remote", [...], indirect=True)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest
import pytest_asyncio

import jib
from jib.errors import ProviderConnectionError, ProviderTimeoutError, error_for_status
from jib.generator.http import HTTPGenerator
from jib.messages import Message
from jib.params import GenerateParams
from jib.testing import CallbackGenerator
from tests.support.fault_injection import RunningFaultInjection, run_fault_injection

PROVIDERS = ["litellm", "openai", "http", "callback"]
WITH_HEADERS = ["litellm", "openai", "http"]
"""Providers whose errors carry the response's headers (`Retry-After`); a callback's do not."""


@pytest.fixture(scope="session")
def _fault_injection_session() -> Iterator[RunningFaultInjection]:
    with run_fault_injection() as server:
        yield server


@pytest.fixture
def faults(_fault_injection_session: RunningFaultInjection) -> Iterator[RunningFaultInjection]:
    """The fault-injection server, answering everything, its recordings and connections
    cleared; reset again after the test, so nothing it held outlives it."""
    _fault_injection_session.state.reset()
    yield _fault_injection_session
    _fault_injection_session.state.reset()


class PlainCallback:
    """A `CallbackGenerator` callback: posts the last message to `/plain`, returns the answer.

    Failures become jib's errors the way a user's client code would raise them: an error status
    through `error_for_status`, a broken or refused connection (a cut body included) as
    `ProviderConnectionError`, a timeout as `ProviderTimeoutError`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    async def __call__(self, messages: Sequence[Message], params: GenerateParams) -> str:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(timeout=30)
        try:
            response = await client.post(self.url, json={"prompt": messages[-1].content})
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(f"no answer from {self.url}", provider="callback") from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"{type(exc).__name__} from {self.url}", provider="callback"
            ) from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.text, provider="callback")
        answer: str = response.json()["answer"]
        return answer

    async def aclose(self) -> None:
        """Close the client of the running loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


class Remote:
    """One remote provider aimed at the fault-injection server."""

    def __init__(self, provider: str, server: RunningFaultInjection) -> None:
        self.provider = provider
        self.server = server
        self._http: list[HTTPGenerator] = []
        self._pooled: list[Any] = []
        self._callbacks: list[PlainCallback] = []

    def generator(self, **attributes: Any) -> jib.Generator:
        """A generator of this provider with these attributes (`max_retries=2`, …)."""
        if self.provider in ("litellm", "openai"):
            settings = "".join(f",{name}={value}" for name, value in attributes.items())
            route = "openai/" if self.provider == "litellm" else "openai!"
            generator = jib.get_generator(
                f"{route}fault-model,api_base={self.server.openai_base},api_key=sk-test{settings}"
            )
            if self.provider == "openai":
                self._pooled.append(generator)
            return generator
        if self.provider == "http":
            generator = HTTPGenerator.for_json_endpoint(
                self.server.plain_url,
                request_body={"prompt": "$content"},
                response={"content_path": "$.answer"},
                **attributes,
            )
            self._http.append(generator)
            return generator
        callback = PlainCallback(self.server.plain_url)
        self._callbacks.append(callback)
        return CallbackGenerator(model="fault-callback", callback=callback, **attributes)

    async def aclose(self) -> None:
        """Close the connection pools this remote's generators opened on the running loop."""
        for generator in [*self._http, *self._pooled]:
            await generator.aclose()
        for callback in self._callbacks:
            await callback.aclose()

    def __repr__(self) -> str:
        return self.provider


@pytest_asyncio.fixture(params=PROVIDERS, ids=PROVIDERS, loop_scope="function")
async def remote(
    request: pytest.FixtureRequest, faults: RunningFaultInjection
) -> AsyncIterator[Remote]:
    """A remote provider (each in turn) aimed at `faults`; its pools closed after the test."""
    remote = Remote(request.param, faults)
    yield remote
    await remote.aclose()
