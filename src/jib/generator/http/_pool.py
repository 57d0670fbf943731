"""One pooled httpx client per event loop, closed when that loop shuts down; how it reaches
the network (proxy, TLS verification).

httpx clients (like every asyncio resource) belong to the loop that opened their connections,
so a generator reused across two `asyncio.run` calls needs one client per loop. Each client is
paired with an async generator the loop finalizes in `shutdown_asyncgens()` (which
`asyncio.run` calls before closing the loop): its `finally` closes the client, so pooled
connections are closed on their own loop instead of leaking as unclosed transports.

Proxies: the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` apply (and
`SSL_CERT_FILE`/`SSL_CERT_DIR`), as in curl; a generator's own `proxy` replaces them for every
request it sends. A proxy given as an attribute may not carry credentials: attributes are written
into identifiers and stored with every chat, while the environment is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["LoopClients", "ProxyURL", "Verify", "check_proxy_url", "read_verify"]

_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_FALSE = frozenset({"false", "0", "no", "off"})
_TRUE = frozenset({"true", "1", "yes", "on"})


def check_proxy_url(value: Any) -> Any:
    """A `proxy` attribute checked: `None`, `""` (no proxy) or `scheme://host:port`.

    Raises:
        InvalidGeneratorError: not a proxy URL, or one carrying credentials (the message masks
            them); raised as is, so pydantic does not quote the value.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidGeneratorError(f"proxy must be a URL string, not {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.username is not None or parts.password is not None:
        shown = f"{parts.scheme}://***@{parts.hostname or ''}"
        raise InvalidGeneratorError(
            f"proxy={shown}… carries credentials, which would be written into the identifier "
            "and stored with every chat; set them in the environment instead "
            "(HTTPS_PROXY=http://user:password@host:port)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as exc:
        raise InvalidGeneratorError(f"proxy={value!r} has an invalid port: {exc}") from None
    if parts.scheme.lower() not in _PROXY_SCHEMES or not parts.hostname:
        raise InvalidGeneratorError(
            f"proxy={value!r} is not a proxy URL; expected scheme://host:port with scheme "
            f"{', '.join(_PROXY_SCHEMES)} (e.g. http://127.0.0.1:8080 for Burp or mitmproxy)"
        )
    return value.strip()


def read_verify(value: Any) -> Any:
    """A `verify` attribute read: `True`/`False` (also as text: true/false, yes/no, 1/0, on/off)
    or the path of a CA bundle (PEM) to trust instead of the system's certificates."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _FALSE:
            return False
        if word in _TRUE:
            return True
        if not word:
            raise InvalidGeneratorError(
                "verify is empty; expected true, false or the path of a CA bundle (PEM)"
            )
        return os.path.expanduser(value.strip())
    return value


def _trusting(ca_bundle: str) -> ssl.SSLContext:
    """A TLS context that trusts the CA bundle (a PEM file, or a folder of them) at this path.

    Raises:
        InvalidGeneratorError: there is no such file or folder, or it holds no usable
            certificate.
    """
    import ssl

    is_folder = os.path.isdir(ca_bundle)
    if not is_folder and not os.path.isfile(ca_bundle):
        raise InvalidGeneratorError(
            f"verify={ca_bundle!r}: no such CA bundle file; expected true, false or the path "
            "of a PEM file"
        )
    try:
        if is_folder:
            return ssl.create_default_context(capath=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidGeneratorError(
            f"verify={ca_bundle!r} cannot be used as a CA bundle: {exc}"
        ) from exc


ProxyURL = Annotated[str | None, BeforeValidator(check_proxy_url)]
"""The type of the `proxy` attribute: a proxy URL without credentials, or `None`."""
Verify = Annotated[bool | str, BeforeValidator(read_verify)]
"""The type of the `verify` attribute: verify TLS certificates, don't, or trust this CA bundle."""


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _environment_proxies() -> bool:
    """Whether the environment names a proxy (any case, as httpx and curl read them)."""
    return any(
        value.strip() for name, value in os.environ.items() if name.lower() in _PROXY_VARIABLES
    )


@dataclass
class _Entry:
    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


class LoopClients:
    """httpx clients keyed by event loop; each lives until `aclose()` or its loop shuts down."""

    def __init__(
        self, max_connections: int, proxy: str | None = None, verify: bool | str = True
    ) -> None:
        """Clients made here pool at most `max_connections` connections, send through `proxy`
        (else the environment's proxies) and verify TLS certificates as `verify` says."""
        self.max_connections = max_connections
        self.proxy = proxy
        self.verify = verify
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def settings(self) -> tuple[int, str | None, bool | str]:
        """`(max_connections, proxy, verify)`: a generator whose settings changed needs new
        clients."""
        return (self.max_connections, self.proxy, self.verify)

    def __len__(self) -> int:
        """How many loops have an open client."""
        return len(self._entries)

    async def get(self) -> httpx.AsyncClient:
        """The running loop's client, opened on first use."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is not None and not entry.client.is_closed:
            return entry.client
        self._forget_closed_loops()
        client = self._open()
        closer = self._close_at_shutdown(loop, client)
        self._entries[loop] = _Entry(client, closer)
        # Runs to the `yield` without suspending, so no other task sees a half-made entry; the
        # first step registers the generator with the loop's `shutdown_asyncgens()`.
        await closer.__anext__()
        return client

    def _open(self) -> httpx.AsyncClient:
        import httpx

        limits = httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
        )
        verify = self.verify if isinstance(self.verify, bool) else _trusting(self.verify)
        try:
            return httpx.AsyncClient(
                limits=limits,
                follow_redirects=False,  # `_transport.send` follows them, dropping credentials
                trust_env=True,  # HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE; no .netrc in httpx 0.28
                proxy=self.proxy,
                verify=verify,
                transport=self._direct_transport(limits, verify),
            )
        except ImportError as exc:  # a socks5:// proxy without httpx's socks extra
            where = f"proxy={self.proxy!r}" if self.proxy else "the environment's SOCKS proxy"
            raise InvalidGeneratorError(
                f"{where} needs the socksio package: pip install 'httpx[socks]'"
            ) from exc

    def _direct_transport(
        self, limits: httpx.Limits, verify: bool | ssl.SSLContext
    ) -> httpx.AsyncBaseTransport | None:
        """aiohttp under httpx when requests go straight to the server, else `None` (httpx's own).

        httpx's connection pool costs several times aiohttp's CPU per request at high
        concurrency; `httpx_aiohttp` keeps httpx's API (requests, responses, the hook's
        `httpx.Response`) over aiohttp's pool. A proxy (the attribute, or the environment's,
        which httpx ignores once a transport is given) keeps httpx's own transport, which
        implements proxies and `NO_PROXY` fully.
        """
        if self.proxy is not None or _environment_proxies():
            return None
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(
            verify=verify, limits=limits, trust_env=True
        )
        return transport

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a new one opens on next use)."""
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.closer.aclose()

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            entry = self._entries.get(loop)
            if entry is not None and entry.client is client:
                del self._entries[loop]
            if not loop.is_closed():
                await client.aclose()

    def _forget_closed_loops(self) -> None:
        # A loop closed without `shutdown_asyncgens()` cannot close its client any more; drop it
        # so the loop (which its connections reference) can be collected.
        for loop in [loop for loop in self._entries if loop.is_closed()]:
            closer = self._entries.pop(loop).closer
            # Finish the generator here (its `finally` skips the closed loop); left unfinished,
            # its finalizer would try to schedule `aclose()` on the closed loop and fail.
            with contextlib.suppress(StopIteration):
                closer.aclose().send(None)
