"""Keeping keys out of the client libraries' own logs.

httpx logs every request's full URL at INFO (and httpcore response headers at DEBUG); a key in a
query string would land in the user's logs. While the wire sends through httpx, a filter on those
loggers cuts URLs to their origin and passes every record through the sending generator's
redaction. aiohttp logs nothing of a request.

Global state: the filter is added once to the httpx/httpcore loggers (it passes records of
anyone else's use of httpx unchanged); which redaction applies is a context variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Callable, Iterator

from jib._secrets import REDACTED, is_secret_name
from jib._wire.models import origin_of

__all__ = ["redacting_library_logs"]

_HEADER_PAIR = re.compile(r"\(b'([^']*)', b'(?:[^'\\]|\\.)*'\)")
_LIBRARY_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2")
_redactor: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "jib_wire_redactor", default=None
)


class _RedactingFilter(logging.Filter):
    """Rewrites httpx/httpcore records logged while the wire sends: URLs cut to their origin,
    secrets replaced. Records logged by anyone else's use of httpx pass unchanged."""

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


_installed = False


@contextlib.contextmanager
def redacting_library_logs(redact: Callable[[str], str]) -> Iterator[None]:
    """Within this block (and the tasks it starts), httpx/httpcore records pass `redact`."""
    global _installed
    if not _installed:
        for name in _LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            if _log_filter not in logger.filters:
                logger.addFilter(_log_filter)
        _installed = True
    token = _redactor.set(redact)
    try:
        yield
    finally:
        _redactor.reset(token)
