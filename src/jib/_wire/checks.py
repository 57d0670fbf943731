"""What the wire refuses to send: requests that no client should put on a socket as built.

Checked before every hop, the same for either client, so a bad URL or header fails the same way
(`ProcessingError`, not retried) instead of as whatever the client library raises — or, worse, a
DNS lookup of a host holding a NUL byte, or a header split into two by a line break.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from jib._wire.models import WireRequest, origin_of
from jib.errors import ProcessingError

__all__ = ["check_sendable"]

_SCHEMES = frozenset({"http", "https"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_sendable(request: WireRequest, known_good_url: str | None = None) -> None:
    """Refuse a request whose URL or headers cannot be sent as they are (a URL equal to
    `known_good_url`, checked before, is not checked again).

    Raises:
        ProcessingError: the URL is not an absolute http(s) URL with a host (and a valid port),
            holds control characters, or a header name is not a token or a value holds a line
            break or NUL. The message shows the URL's origin only.
    """
    url = request.url
    reason = None if url == known_good_url else _url_problem(url)
    if reason is None:
        for name, value in request.headers.items():
            reason = _header_problem(name, value)
            if reason is not None:
                break
    if reason is not None:
        raise ProcessingError(f"a request to {origin_of(url)!r} cannot be sent: {reason}")


def _url_problem(url: str) -> str | None:
    if _CONTROL.search(url):
        return "the URL holds a control character (a line break, a NUL, …)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or too large
    except ValueError as exc:
        return f"invalid URL ({exc})"
    if parts.scheme.lower() not in _SCHEMES:
        return f"invalid URL: the scheme must be http or https, not {parts.scheme!r}"
    host = parts.hostname
    if not host:
        return "invalid URL: it has no host"
    if any(character.isspace() for character in host):
        return "invalid URL: its host holds white space"
    return None


def _header_problem(name: str, value: str) -> str | None:
    if not _TOKEN.fullmatch(name):
        return f"the header name {name[:40]!r} is not a valid HTTP token"
    if "\r" in value or "\n" in value or "\0" in value:
        return f"the value of header {name!r} holds a line break or a NUL"
    return None
