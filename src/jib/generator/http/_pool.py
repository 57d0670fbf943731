"""One pooled client per event loop, closed when that loop shuts down (see `jib._per_loop`);
how it reaches the network (proxy, TLS verification).

Proxies: the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` apply (and
`SSL_CERT_FILE`/`SSL_CERT_DIR`), as in curl; a generator's own `proxy` replaces them for every
request it sends. A proxy given as an attribute may not carry credentials: attributes are written
into identifiers and stored with every chat, while the environment is not.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from jib._per_loop import PerLoop
from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    import ssl

    import aiohttp
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


class LoopClients:
    """One client per event loop; each lives until `aclose()` or its loop shuts down.

    A client is an aiohttp session when requests go straight to the server, or an httpx client
    when a proxy is in play (the attribute, or the environment's): httpx implements proxies and
    `NO_PROXY` fully, while aiohttp's pool costs several times less CPU per request.
    """

    def __init__(
        self, max_connections: int, proxy: str | None = None, verify: bool | str = True
    ) -> None:
        """Clients made here pool at most `max_connections` connections, send through `proxy`
        (else the environment's proxies) and verify TLS certificates as `verify` says."""
        self.max_connections = max_connections
        self.proxy = proxy
        self.verify = verify
        self._clients: PerLoop[httpx.AsyncClient | aiohttp.ClientSession] = PerLoop(
            self._open, _close, _is_closed
        )

    @property
    def settings(self) -> tuple[int, str | None, bool | str]:
        """`(max_connections, proxy, verify)`: a generator whose settings changed needs new
        clients."""
        return (self.max_connections, self.proxy, self.verify)

    def __len__(self) -> int:
        """How many loops have an open client."""
        return len(self._clients)

    async def get(self) -> httpx.AsyncClient | aiohttp.ClientSession:
        """The running loop's client, opened on first use."""
        return await self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a new one opens on next use)."""
        await self._clients.aclose()

    def _open(self) -> httpx.AsyncClient | aiohttp.ClientSession:
        verify = self.verify if isinstance(self.verify, bool) else _trusting(self.verify)
        if self.proxy is None and not _environment_proxies():
            return _direct_session(self.max_connections, verify)
        import httpx

        limits = httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
        )
        try:
            return httpx.AsyncClient(
                limits=limits,
                follow_redirects=False,  # `_transport.send` follows them, dropping credentials
                trust_env=True,  # HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE; no .netrc in httpx 0.28
                proxy=self.proxy,
                verify=verify,
            )
        except ImportError as exc:  # a socks5:// proxy without httpx's socks extra
            where = f"proxy={self.proxy!r}" if self.proxy else "the environment's SOCKS proxy"
            raise InvalidGeneratorError(
                f"{where} needs the socksio package: pip install 'httpx[socks]'"
            ) from exc


def _direct_session(max_connections: int, verify: bool | ssl.SSLContext) -> aiohttp.ClientSession:
    """An aiohttp session for requests straight to the server (no proxy, no `.netrc`).

    TLS as httpx would do it: the system's certificates (and `SSL_CERT_FILE`/`SSL_CERT_DIR`),
    none with `verify=False`, or the context for a CA bundle.
    """
    import aiohttp

    if verify is True:
        import ssl

        context: ssl.SSLContext | bool = ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or None,
            capath=os.environ.get("SSL_CERT_DIR") or None,
        )
    else:
        context = verify
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=context)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies kept per client, as httpx does
    )


async def _close(client: httpx.AsyncClient | aiohttp.ClientSession) -> None:
    import httpx

    if isinstance(client, httpx.AsyncClient):
        await client.aclose()
    else:
        await client.close()
        # Closing a transport finishes on the loop's next turn; `asyncio.run` closes the loop
        # right after this, which would leave the sockets open ("unclosed transport").
        await asyncio.sleep(0)


def _is_closed(client: httpx.AsyncClient | aiohttp.ClientSession) -> bool:
    import httpx

    if isinstance(client, httpx.AsyncClient):
        return client.is_closed
    return bool(client.closed)
