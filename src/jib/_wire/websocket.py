"""WebSockets over the wire: the seam's entry point for `ws!`, with the wire's settings and rules.

A provider builds a `WireRequest` (`GET`, a `ws://` or `wss://` URL, the handshake's headers)
and hands it to its generator's `WebSockets`; it gets back a `WireSocket` to send text frames on
and receive them from. What the HTTP wire decides holds here too, once:

- one aiohttp session per event loop (`jib._per_loop`), closed when its loop shuts down;
- TLS from `verify=`, `cert=` and `cert_keyfile=` (`WireSettings.tls`), the same as for requests;
- proxies: the generator's `proxy=`, else the environment's (`HTTP_PROXY` for `ws://`,
  `HTTPS_PROXY` for `wss://`, `ALL_PROXY`, with `NO_PROXY`), reached with `CONNECT`; aiohttp
  speaks to HTTP proxies only, so a `socks5://` proxy is refused with a clear error;
- the handshake is checked like any request (`checks`), and redirects follow the one policy
  (`redirects`): aiohttp's own redirect handling is stopped by a session middleware, and the
  wire follows a redirect itself, credentials kept off other origins;
- `max_response_bytes` bounds every frame (aiohttp's `max_msg_size`);
- failures map to jib errors as for requests (`failures`); a refused handshake by its status
  (`error_for_status`: 401 is an authentication error, 429 a rate limit, 5xx retried), and a
  connection closed while the provider waits for frames is a retryable
  `ProviderConnectionError`.

What it does not do: deciding when an answer is complete, retries and deadlines (the provider
and the request tier do that).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from jib._per_loop import PerLoop, RuntimeResource
from jib._secrets import redact
from jib._wire.checks import check_sendable
from jib._wire.failures import TRANSPORT_FAILURES
from jib._wire.models import WireRequest, origin_of
from jib._wire.redirects import REDIRECT_STATUS, next_request
from jib._wire.settings import WireSettings
from jib._wire.wire import Sender, _mapped
from jib.errors import (
    InvalidGeneratorError,
    JibError,
    ProcessingError,
    ProviderConnectionError,
    error_for_status,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["WS_SCHEMES", "WebSockets", "WireSocket", "http_url_of", "ws_url_of"]

WS_SCHEMES = ("ws://", "wss://")
"""The URL schemes a WebSocket handshake may go to."""

_TO_HTTP = {"ws": "http", "wss": "https"}
_TO_WS = {"http": "ws", "https": "wss"}


def http_url_of(url: str) -> str:
    """The `http(s)://` form of a `ws(s)://` URL (how the handshake goes over HTTP)."""
    scheme, sep, rest = url.partition("://")
    return f"{_TO_HTTP.get(scheme.lower(), scheme)}{sep}{rest}"


def ws_url_of(url: str) -> str:
    """The `ws(s)://` form of an `http(s)://` URL (a redirect's `Location`)."""
    scheme, sep, rest = url.partition("://")
    return f"{_TO_WS.get(scheme.lower(), scheme)}{sep}{rest}"


class _Redirected(Exception):
    """Raised by the session middleware for a redirect, which the wire follows by its policy."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status)
        self.status = status
        self.location = location


class WireSocket:
    """One open WebSocket: send text frames, receive them; closed with `aclose()`.

    Every method raises jib errors only, redacted with the sender's secrets.
    """

    __slots__ = ("_limit", "_sender", "_socket", "url")

    def __init__(
        self, socket: aiohttp.ClientWebSocketResponse[Any], url: str, sender: Sender, limit: int
    ) -> None:
        self._limit = limit
        self._socket = socket
        self._sender = sender
        self.url = url

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by either side)."""
        return bool(self._socket.closed)

    async def send(self, text: str) -> None:
        """Send one text frame.

        Raises:
            ProviderConnectionError: the connection is closed or broke (retryable).
        """
        if self._socket.closed:
            raise self._dropped("before the message could be sent")
        try:
            await self._socket.send_str(text)
        except JibError:
            raise
        except TRANSPORT_FAILURES() as exc:
            failure: BaseException = exc
        else:
            return
        raise _mapped(failure, self.url, self._sender)

    async def receive(self, timeout: float | None = None) -> str | None:
        """The next data frame as text (binary frames decoded as UTF-8), or `None` when
        `timeout` seconds pass without one. Pings are answered by the client, unseen.

        Raises:
            ProviderConnectionError: the server closed the connection or it broke (retryable).
        """
        import aiohttp

        try:
            message = await asyncio.wait_for(self._socket.receive(), timeout)
        except asyncio.TimeoutError:
            return None
        except JibError:
            raise
        except TRANSPORT_FAILURES() as exc:
            failure: BaseException = exc
        else:
            if message.type is aiohttp.WSMsgType.TEXT:
                return str(message.data)
            if message.type is aiohttp.WSMsgType.BINARY:
                return bytes(message.data).decode("utf-8", "replace")
            if message.type is not aiohttp.WSMsgType.ERROR:  # CLOSE, CLOSING, CLOSED
                code = self._socket.close_code
                raise self._dropped(f"while the answer was awaited (close code {code})")
            error = message.data
            if getattr(error, "code", None) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                raise ProcessingError(
                    f"a frame from {origin_of(self.url)} is over max_response_bytes="
                    f"{self._limit}; stopped reading"
                )
            detail = redact(f"{type(error).__name__}: {error}", self._sender.wire_secrets())
            raise self._dropped(f"while the answer was awaited ({detail})")
        raise _mapped(failure, self.url, self._sender)

    def _dropped(self, when: str) -> ProviderConnectionError:
        return ProviderConnectionError(
            f"the WebSocket connection to {origin_of(self.url)} closed {when}",
            provider=self._sender.wire_label,
        )

    async def aclose(self) -> None:
        """Close the connection (a normal closure); never raises."""
        # The peer may be gone already: there is nothing to do about a failed close.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._socket.close(), 1.0)


class WebSockets(RuntimeResource):
    """Opens WebSockets for one generator (and its copies): one aiohttp session per event loop,
    each closed when its loop shuts down or on `aclose()`."""

    def __init__(self, settings: WireSettings) -> None:
        self.settings = settings
        self._sessions: PerLoop[aiohttp.ClientSession] = PerLoop(
            lambda: _open_session(settings), _close_session, lambda session: session.closed
        )

    def _fresh_arguments(self) -> tuple[WireSettings]:
        return (self.settings,)

    async def connect(self, request: WireRequest, sender: Sender) -> WireSocket:
        """Open a WebSocket: the handshake of `request` (a `ws(s)://` URL and its headers),
        following redirects by the wire's policy.

        Raises:
            ProcessingError: the handshake cannot be sent as built (a bad URL or header), or a
                redirect leaves the `ws`/`http` schemes.
            InvalidGeneratorError: the proxy in play is not an HTTP proxy.
            ProviderError: the server refused the handshake (by its status, see the module).
            ProviderConnectionError, ProviderTimeoutError: the transport failed.
        """
        session = await self._sessions.get()
        redirects = self.settings.max_redirects
        for hop in range(redirects + 1):
            _check(request)
            try:
                socket = await session.ws_connect(
                    request.url,
                    headers=dict(request.headers),
                    proxy=self._proxy_for(request.url),
                    max_msg_size=self.settings.max_response_bytes,
                    autoping=True,
                )
            except _Redirected as redirect:
                if hop == redirects:
                    raise error_for_status(
                        redirect.status,
                        f"{origin_of(request.url)} redirected the WebSocket handshake; "
                        f"max_redirects={redirects} are followed",
                        provider=sender.wire_label,
                    ) from None
                hop_request = WireRequest("GET", http_url_of(request.url), request.headers)
                followed = next_request(
                    hop_request, redirect.status, http_url_of(redirect.location)
                )
                request = WireRequest("GET", ws_url_of(followed.url), followed.headers)
                continue
            except JibError:
                raise
            except TRANSPORT_FAILURES() as exc:
                failure: BaseException = exc
            else:
                return WireSocket(socket, request.url, sender, self.settings.max_response_bytes)
            raise self._refused(failure, request, sender)
        raise AssertionError("unreachable: the last hop returns or raises")

    def _refused(self, failure: BaseException, request: WireRequest, sender: Sender) -> JibError:
        import aiohttp

        if isinstance(failure, aiohttp.WSServerHandshakeError) and failure.status != 101:
            detail = "the server refused the WebSocket handshake"
            retry_after = None
            if failure.headers is not None:
                from jib._retry import retry_after_from

                retry_after = retry_after_from(failure.headers)
            return error_for_status(
                failure.status,
                redact(f"{detail} ({origin_of(request.url)})", sender.wire_secrets()),
                provider=sender.wire_label,
                retry_after=retry_after,
            )
        return _mapped(failure, request.url, sender)

    def _proxy_for(self, url: str) -> str | None:
        proxy = self.settings.proxy
        if proxy is None:
            proxy = _environment_proxy(url)
        if proxy is not None and not proxy.lower().startswith(("http://", "https://")):
            raise InvalidGeneratorError(
                f"the proxy for {origin_of(url)} is {origin_of(proxy)}; WebSockets go through "
                "HTTP proxies only (http://host:port), not SOCKS"
            )
        return proxy

    async def aclose(self) -> None:
        """Close the running loop's session and its sockets (a new one opens on next use)."""
        await self._sessions.aclose()


def _check(request: WireRequest) -> None:
    """The wire's checks on the handshake (the URL as the HTTP request it is)."""
    url = request.url
    if not url.lower().startswith(WS_SCHEMES):
        raise ProcessingError(
            f"a WebSocket to {origin_of(url)!r} cannot be opened: the scheme must be ws or wss"
        )
    check_sendable(WireRequest("GET", http_url_of(url), request.headers))


def _environment_proxy(url: str) -> str | None:
    """The environment's proxy for `url`, as curl and httpx read it (`NO_PROXY` honoured)."""
    import urllib.request
    from urllib.parse import urlsplit

    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    scheme = "https" if parts.scheme.lower() == "wss" else "http"
    return proxies.get(scheme) or proxies.get("all") or None


def _open_session(settings: WireSettings) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, ssl=settings.tls())
    jar: aiohttp.abc.AbstractCookieJar = (
        aiohttp.CookieJar(unsafe=True) if settings.cookies else aiohttp.DummyCookieJar()
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # proxies are chosen here; no .netrc
        cookie_jar=jar,
        timeout=aiohttp.ClientTimeout(total=None),
        middlewares=(_stop_redirects,),
    )


async def _stop_redirects(request: Any, handler: Any) -> Any:
    """Hand a redirect to the wire instead of letting aiohttp follow it by its own rules."""
    response = await handler(request)
    location = response.headers.get("Location")
    if response.status in REDIRECT_STATUS and location:
        response.release()
        raise _Redirected(response.status, location)
    return response


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    await asyncio.sleep(0)
