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
from collections.abc import Callable
from typing import TYPE_CHECKING

from jib._secrets import REDACTED, is_secret_name
from jib.errors import ProcessingError
from jib.generator.http.spec import PreparedRequest, origin_of

if TYPE_CHECKING:
    import httpx

__all__ = ["safe_headers", "send"]

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# Headers kept when a redirect leaves the origin; every other header may carry credentials.
_CROSS_ORIGIN_SAFE_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})
# Dropped from the response handed on: the body is already decoded and measured.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


async def send(
    client: httpx.AsyncClient,
    prepared: PreparedRequest,
    *,
    timeout: float,
    max_redirects: int,
    max_bytes: int,
    redact: Callable[[str], str],
) -> httpx.Response:
    """Send `prepared`, following redirects, and return the final response with its body read.

    Redirects that leave the origin keep only harmless headers, so credentials stay with the host
    they were meant for; 303 (and 301/302 after a POST) continue as a GET without a body. A
    redirect that would carry the body to another origin (307/308, or 301/302 after a PUT) is
    not followed: the body may hold the key too. What httpx and httpcore log meanwhile goes
    through `redact`.

    Raises:
        ProcessingError: the body is larger than `max_bytes` (reading stops there), or a
            redirect would send the body to another origin.
        httpx.HTTPError: the transport failed.
    """
    _install_log_filter()
    token = _redactor.set(redact)
    try:
        return await _send(
            client, prepared, timeout=timeout, max_redirects=max_redirects, max_bytes=max_bytes
        )
    finally:
        _redactor.reset(token)


async def _send(
    client: httpx.AsyncClient,
    prepared: PreparedRequest,
    *,
    timeout: float,
    max_redirects: int,
    max_bytes: int,
) -> httpx.Response:
    import httpx

    method, url, headers = prepared.method, prepared.url, dict(prepared.headers)
    content = prepared.content
    origin = origin_of(url)
    for hop in range(max_redirects + 1):
        request = client.build_request(
            method, url, headers=headers, content=content, timeout=httpx.Timeout(timeout)
        )
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUS and location and hop < max_redirects:
                url = str(request.url.join(location))
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, content = "GET", None
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                if origin_of(url) != origin:
                    if content is not None:
                        raise ProcessingError(
                            f"{origin} answered {response.status_code}, redirecting the "
                            f"{method} request and its body to {origin_of(url)}, another origin; "
                            "jib does not send a request body where it was not addressed (it "
                            "may hold the key). Point request.url at the new location instead"
                        )
                    headers = {
                        name: value
                        for name, value in headers.items()
                        if name.lower() in _CROSS_ORIGIN_SAFE_HEADERS
                    }
                    origin = origin_of(url)
                continue
            body = await _read_limited(response, max_bytes)
        finally:
            await response.aclose()
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _BODY_FRAMING_HEADERS
        ]
        final: httpx.Response = httpx.Response(
            response.status_code, headers=kept, content=body, request=request
        )
        return final
    raise AssertionError("unreachable: the last hop returns")  # pragma: no cover


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProcessingError(
            f"the response body is {int(declared)} bytes; max_response_bytes={limit}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ProcessingError(
                f"the response body is over max_response_bytes={limit} bytes; stopped reading it"
            )
        chunks.append(chunk)
    return b"".join(chunks)


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
