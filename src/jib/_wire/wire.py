"""`Wire`: one generator's way to the network (see the package docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from typing import Protocol, TypeVar

from jib._per_loop import PerLoop, RuntimeResource
from jib._secrets import redact, redacted_chain
from jib._wire.checks import check_sendable
from jib._wire.failures import TRANSPORT_FAILURES, transport_error
from jib._wire.logs import redacting_library_logs
from jib._wire.models import WireRequest, WireResponse, origin_of
from jib._wire.redirects import REDIRECT_STATUS, next_request
from jib._wire.settings import WireSettings
from jib._wire.transports import Transport, open_transport
from jib.errors import JibError

__all__ = ["Sender", "Wire"]

T = TypeVar("T")
_NO_LOGS = contextlib.nullcontext()


class Sender(Protocol):
    """Who sends: what errors name as the provider, and the secrets to keep out of messages
    and logs (asked only when something is written)."""

    @property
    def wire_label(self) -> str:
        """The provider, as errors name it (`openai!gpt-4o-mini`)."""

    def wire_secrets(self) -> Sequence[str | None]:
        """The secrets this sender's requests may carry."""


class Wire(RuntimeResource):
    """Sends requests for one generator (and its copies): one client per event loop, each
    closed when its loop shuts down or on `aclose()`.

    Every method raises jib errors only (see `jib._wire.failures`); messages are redacted with
    the `secrets` the caller passes, and the library's exception is chained only as a redacted
    stand-in.
    """

    def __init__(self, settings: WireSettings) -> None:
        self.settings = settings
        self._clients: PerLoop[Transport] = PerLoop(
            lambda: open_transport(settings), _close, _is_closed
        )
        # The last URL and headers that passed `check_sendable` (a provider sends the same ones
        # again and again).
        self._good_url: str | None = None
        self._good_headers: Mapping[str, str] | None = None

    def _fresh_arguments(self) -> tuple[WireSettings]:
        return (self.settings,)

    def __len__(self) -> int:
        """How many event loops have an open client."""
        return len(self._clients)

    async def send(self, request: WireRequest, sender: Sender) -> WireResponse:
        """Send `request` (following redirects by the policy) and read the whole body.

        Raises:
            ProcessingError: the body is over `max_response_bytes`, the request cannot be sent
                as built, or a redirect would carry its body to another origin.
            ProviderConnectionError, ProviderTimeoutError, MalformedResponseError: the transport
                failed (see `jib._wire.failures`).
        """
        client = await self._clients.get()
        logs = (
            redacting_library_logs(lambda text: redact(text, sender.wire_secrets()))
            if client.logs_requests
            else _NO_LOGS
        )
        with logs:
            try:
                self._check(request)
                response = await client.hop(request, self.settings.max_response_bytes)
                if response.status in REDIRECT_STATUS and response.headers.get("Location"):
                    response = await self._follow(client, response)
                await response.read()
                return response
            except JibError:
                raise
            except TRANSPORT_FAILURES() as exc:  # evaluated only when something was raised
                failure: BaseException = exc
        raise _mapped(failure, request.url, sender)

    @contextlib.asynccontextmanager
    async def stream(self, request: WireRequest, sender: Sender) -> AsyncIterator[WireResponse]:
        """Send `request` and give the response with its body unread, to read with
        `read_lines()` or `read()`; the connection is released on exit.

        Raises:
            as `send`.
        """
        client = await self._clients.get()
        with redacting_library_logs(lambda text: redact(text, sender.wire_secrets())):
            response = await _guarded(self._exchange(client, request), request.url, sender)
            try:
                yield response
            finally:
                await response.aclose()

    async def read_lines(
        self, response: WireResponse, sender: Sender
    ) -> AsyncGenerator[bytes, None]:
        """`response`'s body line by line (at most `max_response_bytes` a line), failures
        mapped to jib errors as in `send`."""
        lines = response.lines()
        while True:
            try:
                line = await _guarded(lines.__anext__(), response.url, sender)
            except StopAsyncIteration:
                return
            yield line

    async def read(self, response: WireResponse, sender: Sender) -> bytes:
        """`response`'s whole body (at most `max_response_bytes`), failures mapped as in `send`."""
        return await _guarded(response.read(), response.url, sender)

    async def _exchange(self, client: Transport, request: WireRequest) -> WireResponse:
        self._check(request)
        response = await client.hop(request, self.settings.max_response_bytes)
        if response.status in REDIRECT_STATUS and response.headers.get("Location"):
            response = await self._follow(client, response)
        return response

    async def _follow(self, client: Transport, response: WireResponse) -> WireResponse:
        """Follow `response`'s redirect, and the next, by the policy, up to `max_redirects`."""
        limit = self.settings.max_response_bytes
        for _ in range(self.settings.max_redirects):
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUS or not location:
                return response
            await response.aclose()
            request = next_request(response.request, response.status, location)
            self._check(request)
            response = await client.hop(request, limit)
        return response

    def _check(self, request: WireRequest) -> None:
        if request.url == self._good_url and request.headers is self._good_headers:
            return
        check_sendable(request, self._good_url)
        self._good_url, self._good_headers = request.url, request.headers

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a new one opens on next use)."""
        await self._clients.aclose()


async def _guarded(work: Awaitable[T], url: str, sender: Sender) -> T:
    """`await work`, with what the libraries below raise turned into jib errors."""
    try:
        return await work
    except JibError:
        raise
    except TRANSPORT_FAILURES() as exc:  # evaluated only when something was raised
        failure: BaseException = exc
    raise _mapped(failure, url, sender)


def _mapped(failure: BaseException, url: str, sender: Sender) -> JibError:
    """The jib error for `failure`, its cause a redacted stand-in: raise it outside the
    `except` that caught `failure` (whose URL or headers may hold the key), so that is not
    chained as the context."""
    secrets = sender.wire_secrets()
    error = transport_error(
        failure,
        origin_of(url),
        provider=sender.wire_label,
        redact=lambda text: redact(text, secrets),
    )
    error.__cause__ = redacted_chain(failure, secrets)
    error.__suppress_context__ = True
    return error


async def _close(transport: Transport) -> None:
    await transport.aclose()


def _is_closed(transport: Transport) -> bool:
    return transport.closed
