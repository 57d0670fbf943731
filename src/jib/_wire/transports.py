"""The ways the wire moves bytes: jib's own HTTP/1.1 client (straight to the server, the fast
path: `http1`), an aiohttp session (straight to the server, keeping cookies in aiohttp's jar) and
an httpx client (through a proxy, which httpx implements fully, `NO_PROXY` included).

Each sends one hop (no redirects) and hands back a `WireResponse` whose body is still to be
read. Nothing else differs between them: TLS, bounds and failures are set or read the same way
for all.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from jib._wire.models import WireRequest, WireResponse
from jib._wire.settings import WireSettings, environment_proxies
from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    import ssl

    import aiohttp
    import httpx

__all__ = ["Transport", "open_transport"]

# aiohttp adds `Content-Type: application/octet-stream` to a bytes body; httpx adds none. Sent
# only when the request sets it, on both.
_NO_AUTO_HEADERS = frozenset({"Content-Type"})


class Transport(Protocol):
    """One event loop's client."""

    logs_requests: bool
    """Whether the client library logs requests (then the wire redacts its logs)."""

    async def hop(self, request: WireRequest, limit: int) -> WireResponse:
        """Send `request` (no redirects followed); the body is left to read."""

    async def aclose(self) -> None:
        """Close the client and its connections."""

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""


def open_transport(settings: WireSettings) -> Transport:
    """The client for `settings`: httpx when a proxy is in play (the setting, or the
    environment's), aiohttp when cookies are kept, else jib's own HTTP/1.1 client."""
    if settings.proxy is not None or environment_proxies():
        return _Httpx(settings)
    if settings.cookies:
        return _Aiohttp(settings)
    from jib._wire.http1 import Http1Transport

    return Http1Transport(settings)


class _Aiohttp:
    logs_requests = False

    def __init__(self, settings: WireSettings) -> None:
        import aiohttp

        self._settings = settings
        # Each request passes its TLS setting (see `WireSettings.system_tls` for when it is made).
        self._tls: ssl.SSLContext | bool | None = None if settings.system_tls else settings.tls()
        # The request tier bounds requests in flight; the connector only pools (limit=0: no
        # second cap). No timeouts here either: the tier cancels an attempt at its deadline.
        connector = aiohttp.TCPConnector(
            limit=0, ttl_dns_cache=300, ssl=True if self._tls is None else self._tls
        )
        jar: aiohttp.abc.AbstractCookieJar = (
            aiohttp.CookieJar(unsafe=True) if settings.cookies else aiohttp.DummyCookieJar()
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # proxies go through httpx; no .netrc
            cookie_jar=jar,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def hop(self, request: WireRequest, limit: int) -> WireResponse:
        response = await self._session.request(
            request.method,
            request.url,
            headers=request.headers,
            data=_pieces(request.body) if isinstance(request.body, tuple) else request.body,
            allow_redirects=False,
            ssl=self._tls_for(request.url),
            # Only needed when the request sets no Content-Type (aiohttp works the set out per
            # request).
            skip_auto_headers=None if "Content-Type" in request.headers else _NO_AUTO_HEADERS,
        )
        return _AiohttpResponse(response, request, limit)

    def _tls_for(self, url: str) -> ssl.SSLContext | bool:
        if self._tls is None:
            if url[:6].lower() != "https:":
                return True  # no TLS: the connector's setting, unused
            self._tls = self._settings.tls()
        return self._tls

    async def aclose(self) -> None:
        await self._session.close()
        # Closing a transport finishes on the loop's next turn; `asyncio.run` closes the loop
        # right after this, which would leave the sockets open ("unclosed transport").
        await asyncio.sleep(0)

    @property
    def closed(self) -> bool:
        return bool(self._session.closed)


class _Httpx:
    logs_requests = True

    def __init__(self, settings: WireSettings) -> None:
        import http.cookiejar

        import httpx

        cookies = None
        if not settings.cookies:
            refuse_all = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            cookies = httpx.Cookies(http.cookiejar.CookieJar(policy=refuse_all))
        try:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                timeout=httpx.Timeout(None),
                follow_redirects=False,  # the wire follows them, by its own policy
                trust_env=True,  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY; no .netrc in httpx 0.28
                proxy=settings.proxy,
                verify=settings.tls(),
                cookies=cookies,
            )
        except ImportError as exc:  # a socks5:// proxy without httpx's socks extra
            where = f"proxy={settings.proxy!r}" if settings.proxy else "the environment's proxy"
            raise InvalidGeneratorError(
                f"{where} needs the socksio package: pip install 'httpx[socks]'"
            ) from exc

    async def hop(self, request: WireRequest, limit: int) -> WireResponse:
        client: httpx.AsyncClient = self._client
        body = request.body
        built = client.build_request(
            request.method,
            request.url,
            headers=request.headers,
            content=b"".join(body) if isinstance(body, tuple) else body,
        )
        response = await client.send(built, stream=True)
        return _HttpxResponse(response, request, limit)

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def closed(self) -> bool:
        return bool(self._client.is_closed)


class _AiohttpResponse(WireResponse):
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse, request: WireRequest, limit: int) -> None:
        headers = response.headers
        # A compressed body's declared length is not the length read.
        declared = None if "Content-Encoding" in headers else headers.get("Content-Length")
        super().__init__(response.status, headers, request, declared_length=declared, limit=limit)
        self._response = response

    def _chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def aclose(self) -> None:
        self._response.release()  # closes the connection instead when the body was not all read


class _HttpxResponse(WireResponse):
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response, request: WireRequest, limit: int) -> None:
        headers = response.headers
        declared = None if "content-encoding" in headers else headers.get("content-length")
        super().__init__(
            response.status_code, headers, request, declared_length=declared, limit=limit
        )
        self._response = response

    def header_pairs(self) -> list[tuple[str, str]]:
        return self._response.headers.multi_items()

    def _chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def aclose(self) -> None:
        await self._response.aclose()


def _pieces(pieces: tuple[bytes, ...]) -> aiohttp.payload.Payload:
    """An aiohttp payload writing `pieces` one after another (its length known up front)."""
    return _pieces_payload()(pieces)


@functools.cache
def _pieces_payload() -> type[aiohttp.payload.Payload]:
    from aiohttp.payload import Payload

    class Pieces(Payload):
        _value: tuple[bytes, ...]
        _autoclose = True  # bytes in memory, nothing to close (as aiohttp's BytesPayload)

        def __init__(self, value: tuple[bytes, ...]) -> None:
            super().__init__(value)
            self._size = sum(len(piece) for piece in value)

        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            return b"".join(self._value).decode(encoding, errors)

        async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
            for piece in self._value:
                await writer.write(piece)

        async def write_with_length(
            self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None
        ) -> None:
            await self.write(writer)

    return Pieces
