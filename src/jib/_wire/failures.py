"""The one mapping from transport failures (aiohttp's, httpx's, the OS's) to jib errors.

| what happened | jib error | retried |
|---|---|---|
| refused, reset, dropped, DNS, TLS, body cut short, proxy down | `ProviderConnectionError` | yes |
| the server's answer is not HTTP | `MalformedResponseError` | yes |
| a socket timeout of the client library | `ProviderTimeoutError` | yes |
| the request cannot be sent as built (bad URL or header) | `ProcessingError` | no |
| the proxy refused the tunnel | `ProviderConnectionError` | no |
| the server wants a client certificate, or refused ours | `ProviderConnectionError` | no |

Too-large bodies and refused redirects are raised as `ProcessingError` where they are found
(`bodies`, `redirects`). Every message is cut to the origin and passed through the caller's
redaction: a URL may carry the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jib.errors import (
    JibError,
    MalformedResponseError,
    ProcessingError,
    ProviderConnectionError,
    ProviderTimeoutError,
)

__all__ = ["TRANSPORT_FAILURES", "AnswerCut", "NotHTTP", "transport_error"]


class AnswerCut(ConnectionError):
    """jib's HTTP/1.1 client: the connection closed in the middle of an answer's body."""


class NotHTTP(Exception):
    """jib's HTTP/1.1 client: what the server sent is not a valid HTTP/1.1 answer."""


def _failure_types() -> tuple[type[BaseException], ...]:
    import aiohttp
    import httpx

    return (
        asyncio.TimeoutError,
        OSError,
        ValueError,
        NotHTTP,
        aiohttp.ClientError,
        httpx.HTTPError,
    )


TRANSPORT_FAILURES = _failure_types
"""The exception types a send may raise from below jib (called: the libraries load lazily)."""


def transport_error(
    exc: BaseException, origin: str, *, provider: str, redact: Callable[[str], str]
) -> JibError:
    """The jib error for `exc`, raised by aiohttp, httpx or the OS while sending to `origin`."""
    import aiohttp
    import httpx

    detail = redact(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return ProviderTimeoutError(f"no answer from {origin} ({detail})", provider=provider)
    if isinstance(
        exc, (aiohttp.InvalidURL, httpx.InvalidURL, httpx.UnsupportedProtocol)
    ) or _refused_value(exc):
        return ProcessingError(f"the request to {origin} cannot be sent as built: {detail}")
    if isinstance(exc, httpx.ProxyError):
        return ProviderConnectionError(
            f"the proxy refused to carry the request to {origin}: {detail}",
            provider=provider,
            retryable=False,
        )
    if isinstance(exc, (aiohttp.ClientResponseError, NotHTTP)):
        return MalformedResponseError(
            f"the answer from {origin} is not valid HTTP: {detail}", provider=provider
        )
    if isinstance(
        exc, (AnswerCut, aiohttp.ClientPayloadError, httpx.ReadError, httpx.RemoteProtocolError)
    ):
        return ProviderConnectionError(
            f"the connection to {origin} closed before the whole answer arrived ({detail})",
            provider=provider,
        )
    refusal = _certificate_refusal(str(exc))
    if refusal is not None:
        return ProviderConnectionError(
            f"could not reach {origin}: {refusal} ({detail})", provider=provider, retryable=False
        )
    return ProviderConnectionError(f"could not reach {origin}: {detail}", provider=provider)


# TLS alerts a server sends about the client's certificate (mutual TLS); OpenSSL names them in
# its error text. Sending again changes nothing, so they are not retried.
_CERTIFICATE_ALERTS = (
    (
        "ALERT_CERTIFICATE_REQUIRED",
        "the server requires a client certificate; give one with cert=PATH (a PEM file with "
        "its key, or cert=PATH and cert_keyfile=PATH)",
    ),
    (
        "ALERT_UNKNOWN_CA",
        "the server does not trust the client certificate's issuer (cert=)",
    ),
    ("ALERT_BAD_CERTIFICATE", "the server refused the client certificate (cert=)"),
    ("ALERT_CERTIFICATE_UNKNOWN", "the server refused the client certificate (cert=)"),
    ("ALERT_CERTIFICATE_EXPIRED", "the server says the client certificate expired (cert=)"),
)


def _certificate_refusal(text: str) -> str | None:
    upper = text.upper()
    for alert, meaning in _CERTIFICATE_ALERTS:
        if alert in upper:
            return meaning
    return None


def _refused_value(exc: BaseException) -> bool:
    # aiohttp and the socket layer refuse header values with line breaks, and hosts with NUL or
    # other unprintable characters, with a plain ValueError (UnicodeError for a bad IDNA host).
    return isinstance(exc, ValueError) and not isinstance(exc, OSError)
