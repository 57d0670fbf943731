"""The wire level of the HTTP generator: one request with redirects and a bounded body.

Nothing here retries or knows about specs; `generator.py` builds on it. httpx is imported by the
caller's first use (this module is imported by `jib.generator.http` only).

httpx logs every request's full URL at INFO (and httpcore response headers at DEBUG); a key in a
query string would land in the user's logs. While `send` runs, a filter on those loggers cuts
URLs to their origin and passes every record through the generator's redaction.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from jib._bodies import read_limited
from jib._secrets import REDACTED, is_secret_name
from jib.errors import ProcessingError
from jib.generator.http.spec import PreparedRequest, origin_of

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = ["safe_headers", "send"]

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# Headers kept when a redirect leaves the origin; every other header may carry credentials.
_CROSS_ORIGIN_SAFE_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})
# Dropped from the response handed on: the body is already decoded and measured.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


async def send(
    client: httpx.AsyncClient | aiohttp.ClientSession,
    prepared: PreparedRequest,
    *,
    timeout: float,
    max_redirects: int,
    max_bytes: int,
    redact: Callable[[str], str],
) -> httpx.Response:
    """Send `prepared`, following redirects, and return the final response with its body read.

    `client` is an aiohttp session for requests that go straight to the server (the fast path),
    or an httpx client (for proxies, which httpx implements fully). Either way the answer is an
    `httpx.Response`, as hooks expect.

    Redirects that leave the origin keep only harmless headers, so credentials stay with the host
    they were meant for; 303 (and 301/302 after a POST) continue as a GET without a body. A
    redirect that would carry the body to another origin (307/308, or 301/302 after a PUT) is
    not followed: the body may hold the key too. What httpx and httpcore log meanwhile goes
    through `redact` (aiohttp logs nothing of a request).

    Raises:
        ProcessingError: the body is larger than `max_bytes` (reading stops there), or a
            redirect would send the body to another origin.
        httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError: the transport failed.
    """
    import httpx

    hop = (
        _httpx_hop(client, timeout, max_bytes)
        if isinstance(client, httpx.AsyncClient)
        else _aiohttp_hop(client, timeout, max_bytes)
    )
    _install_log_filter()
    token = _redactor.set(redact)
    try:
        return await _follow(hop, prepared, max_redirects=max_redirects)
    finally:
        _redactor.reset(token)


_NO_AUTO_HEADERS = frozenset({"Content-Type"})
_Answer = tuple[int, list[tuple[str, str]], bytes | None]
"""One hop's answer: status, headers, and the body (`None` for a redirect being followed)."""
_Hop = Callable[
    [str, str, dict[str, str], "bytes | None", Callable[[int, "str | None"], bool]],
    Awaitable[_Answer],
]


async def _follow(hop: _Hop, prepared: PreparedRequest, *, max_redirects: int) -> httpx.Response:
    """The redirect policy, the same over either client (see `send`)."""
    import httpx

    method, url, headers = prepared.method, prepared.url, dict(prepared.headers)
    content = None if prepared.content is None else prepared.content.encode()
    origin = origin_of(url)
    for index in range(max_redirects + 1):

        def follows(status: int, location: str | None, last: bool = index == max_redirects) -> bool:
            return status in _REDIRECT_STATUS and bool(location) and not last

        # Built before sending: httpx checks the URL and headers (a NUL in a host is refused
        # here, not looked up), and the final response carries it for hooks.
        request = httpx.Request(method, url, headers=headers, content=content)
        status, answer_headers, body = await hop(method, url, headers, content, follows)
        if body is not None:
            kept = [
                (name, value)
                for name, value in answer_headers
                if name.lower() not in _BODY_FRAMING_HEADERS
            ]
            final: httpx.Response = httpx.Response(
                status, headers=kept, content=body, request=request
            )
            return final
        location = next(value for name, value in answer_headers if name.lower() == "location")
        url = urljoin(url, location)
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if origin_of(url) != origin:
            if content is not None:
                raise ProcessingError(
                    f"{origin} answered {status}, redirecting the {method} request and its "
                    f"body to {origin_of(url)}, another origin; jib does not send a request "
                    "body where it was not addressed (it may hold the key). Point request.url "
                    "at the new location instead"
                )
            headers = {
                name: value
                for name, value in headers.items()
                if name.lower() in _CROSS_ORIGIN_SAFE_HEADERS
            }
            origin = origin_of(url)
    raise AssertionError("unreachable: the last hop returns")  # pragma: no cover


def _httpx_hop(client: httpx.AsyncClient, timeout: float, max_bytes: int) -> _Hop:
    import httpx

    async def hop(
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        follows: Callable[[int, str | None], bool],
    ) -> _Answer:
        request = client.build_request(
            method, url, headers=headers, content=content, timeout=httpx.Timeout(timeout)
        )
        response = await client.send(request, stream=True)
        try:
            items = list(response.headers.multi_items())
            if follows(response.status_code, response.headers.get("location")):
                return response.status_code, items, None
            declared = response.headers.get("content-length")
            body = await read_limited(response.aiter_bytes(), declared, max_bytes)
            return response.status_code, items, body
        finally:
            await response.aclose()

    return hop


def _aiohttp_hop(session: aiohttp.ClientSession, timeout: float, max_bytes: int) -> _Hop:
    import aiohttp

    bound = aiohttp.ClientTimeout(total=timeout)

    async def hop(
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        follows: Callable[[int, str | None], bool],
    ) -> _Answer:
        async with session.request(
            method,
            url,
            headers=headers,
            data=content,
            allow_redirects=False,
            timeout=bound,
            skip_auto_headers=_NO_AUTO_HEADERS,  # sent only when the spec sets it, as httpx does
        ) as response:
            items = list(response.headers.items())
            if follows(response.status, response.headers.get("Location")):
                return response.status, items, None
            declared = response.headers.get("Content-Length")
            if response.headers.get("Content-Encoding"):
                declared = None  # the declared length is the compressed one
            body = await read_limited(response.content.iter_any(), declared, max_bytes)
            return response.status, items, body

    return hop


def safe_headers(headers: httpx.Headers) -> dict[str, str]:
    """Response headers without credentials (`Set-Cookie`, `Authorization`, tokens, keys…)."""
    return {name: value for name, value in headers.items() if not is_secret_name(name)}


# -- logging ------------------------------------------------------------------------------------

_HEADER_PAIR = re.compile(r"\(b'([^']*)', b'(?:[^'\\]|\\.)*'\)")
_LIBRARY_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2")
_redactor: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "jib_http_redactor", default=None
)


class _RedactingFilter(logging.Filter):
    """Rewrites httpx/httpcore records logged inside `send`: URLs cut to their origin, secrets
    replaced. Records logged by anyone else's use of httpx pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact = _redactor.get()
        if redact is None:
            return True
        import httpx

        if isinstance(record.args, tuple):
            record.args = tuple(
                origin_of(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted cannot be checked: drop it
            return False
        # httpcore logs response headers as `(b'name', b'value')` pairs.
        message = _HEADER_PAIR.sub(
            lambda pair: (
                pair.group(0)
                if not is_secret_name(pair.group(1))
                else f"(b'{pair.group(1)}', b'{REDACTED}')"
            ),
            message,
        )
        record.msg = redact(message)
        record.args = None
        return True


_log_filter = _RedactingFilter()


def _install_log_filter() -> None:
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _log_filter not in logger.filters:
            logger.addFilter(_log_filter)
