"""Read a raw HTTP request as Burp, ZAP or a browser's dev tools copy it into a `CopiedRequest`.

Accepted: a request line (`POST /chat?x=1 HTTP/1.1`, also `HTTP/2`, or an absolute URL as a
proxy sees it) or HTTP/2 pseudo-headers instead (`:method`, `:path`, `:authority`, `:scheme`,
as Chrome copies them), header lines in any case (obsolete folded lines joined), a blank line,
then the body; line ends `\\r\\n` or `\\n`. A chunked body is decoded. The scheme is, in order:
the caller's, `:scheme`, the absolute URL's, the scheme of an `Origin` or `Referer` header for
the same host, else `https`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jib._secrets import redact
from jib.errors import InvalidGeneratorError

__all__ = ["CopiedRequest", "parse_raw_request"]

_REQUEST_LINE = re.compile(r"([A-Za-z]+)[ \t]+(\S+)(?:[ \t]+(HTTP/[0-9.]+))?[ \t]*", re.IGNORECASE)
_HEADER_LINE = re.compile(r"(:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*:[ \t]?(.*)")
_HEAD_END = re.compile(r"\r?\n[ \t]*\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")
_LINE_END = re.compile(rb"\r?\n")


@dataclass
class CopiedRequest:
    """A copied request, before it becomes a spec.

    Attributes:
        method: the method, upper case.
        url: the absolute URL (`scheme://host[:port]/path?query`).
        headers: (name, value) pairs as copied, in order (pseudo-headers taken out).
        body: the body text (chunks decoded), or `None` for none.
        basic_auth: `user:password` given apart from the headers (curl's `-u`).
        options: generator attributes the copy sets (curl's `-k` is `verify=False`).
        form: `(name, value)` fields to send as multipart (curl's `-F`), when not `None`.
    """

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    basic_auth: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    form: list[tuple[str, str]] | None = None

    def header(self, name: str) -> str | None:
        """The value of header `name` (any case), the first if repeated, else `None`."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


def parse_raw_request(text: str, *, scheme: str | None = None) -> CopiedRequest:
    """The request a raw HTTP copy describes.

    Raises:
        InvalidGeneratorError: an empty copy, a first line that is neither a request line nor a
            pseudo-header, a header line without a colon, no host, or a body that is not
            chunked as its `Transfer-Encoding` says. The message names the line.
    """
    text = text.lstrip("\r\n\ufeff")
    if not text.strip():
        raise InvalidGeneratorError("the copied request is empty")
    end = _HEAD_END.search(text)
    head, body = (text[: end.start()], text[end.end() :]) if end else (text.rstrip("\r\n"), "")
    lines = re.split(r"\r?\n", head)
    method: str | None = None
    target: str | None = None
    number = 1
    request_line = _first_line(lines[0])
    if request_line is not None:
        method, target = request_line
        lines = lines[1:]
        number = 2
    pairs = _header_lines(lines, number)
    pseudo = {name.lower(): value for name, value in pairs if name.startswith(":")}
    headers = [(name, value) for name, value in pairs if not name.startswith(":")]
    method = method or pseudo.get(":method")
    target = target or pseudo.get(":path")
    if method is None or target is None:
        raise InvalidGeneratorError(
            "line 1 of the copied request is not a request line (METHOD /path HTTP/1.1) and "
            "there is no :method and :path pseudo-header (as dev tools copy HTTP/2 requests): "
            f"{_shown(lines[0] if lines else '')}"
        )
    request = CopiedRequest(method.upper(), _absolute_url(target, headers, pseudo, scheme))
    request.headers = headers
    request.body = _body(body, request) if body else None
    return request


def _first_line(line: str) -> tuple[str, str] | None:
    if line.startswith(":"):
        return None
    match = _REQUEST_LINE.fullmatch(line.strip())
    if match is None:
        if _HEADER_LINE.fullmatch(line.strip()):
            raise InvalidGeneratorError(
                "the copied request starts with a header line; it needs a request line first "
                "(METHOD /path HTTP/1.1) or the :method and :path pseudo-headers: "
                f"{_shown(line)}"
            )
        raise InvalidGeneratorError(
            f"line 1 of the copied request is not a request line (METHOD /path HTTP/1.1): "
            f"{_shown(line)}"
        )
    return match.group(1), match.group(2)


def _header_lines(lines: list[str], first_number: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, first_number):
        if not line.strip():
            continue
        if line[:1] in " \t" and pairs:  # obsolete line folding: a continuation
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {line.strip()}")
            continue
        match = _HEADER_LINE.fullmatch(line.rstrip())
        if match is None:
            raise InvalidGeneratorError(
                f"line {number} of the copied request is not a header (Name: value): {_shown(line)}"
            )
        pairs.append((match.group(1), match.group(2).strip()))
    return pairs


def _absolute_url(
    target: str, headers: list[tuple[str, str]], pseudo: dict[str, str], scheme: str | None
) -> str:
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", target):
        parts = urlsplit(target)
        chosen = (scheme or parts.scheme).lower()
        _check_scheme(chosen)
        rest = target.split("://", 1)[1]
        return f"{chosen}://{rest}"
    if not target.startswith("/"):
        raise InvalidGeneratorError(
            f"the request target {_shown(target)} is neither a path (/chat) nor an absolute URL"
        )
    host = pseudo.get(":authority") or next(
        (value for name, value in headers if name.lower() == "host"), None
    )
    if not host:
        raise InvalidGeneratorError(
            "the copied request names no host: it needs a Host header (or :authority)"
        )
    chosen = (scheme or pseudo.get(":scheme") or _scheme_of_page(host, headers) or "https").lower()
    _check_scheme(chosen)
    return f"{chosen}://{host.strip()}{target}"


def _scheme_of_page(host: str, headers: list[tuple[str, str]]) -> str | None:
    """The scheme of the page that sent the request (`Origin`, `Referer`), if on the same host."""
    for name, value in headers:
        if name.lower() in ("origin", "referer"):
            parts = urlsplit(value.strip())
            if parts.netloc.lower() == host.strip().lower() and parts.scheme:
                return parts.scheme
    return None


def _check_scheme(scheme: str) -> None:
    if scheme not in ("http", "https"):
        raise InvalidGeneratorError(f"the scheme must be http or https, not {scheme!r}")


def _body(body: str, request: CopiedRequest) -> str | None:
    encoding = (request.header("Transfer-Encoding") or "").lower()
    if "chunked" in encoding:
        return decode_chunked(body)
    return body


def decode_chunked(body: str) -> str:
    """A chunked body's content (chunk extensions and trailers dropped); sizes count the
    UTF-8 bytes.

    Raises:
        InvalidGeneratorError: the body is not in chunks (`SIZE\\r\\n DATA\\r\\n … 0\\r\\n`).
    """
    data = body.encode("utf-8")
    pieces: list[bytes] = []
    position = 0
    while True:
        match = _CHUNK_SIZE.match(data, position)
        if match is None:
            where = data[position : position + 20].decode("utf-8", "replace")
            raise InvalidGeneratorError(
                "the copied body is not chunked as its Transfer-Encoding: chunked header says "
                f"(expected a hexadecimal chunk size at {_shown(where)})"
            )
        size = int(match.group(1), 16)
        if size == 0:
            return b"".join(pieces).decode("utf-8", "replace")
        start = match.end()
        if start + size > len(data):
            raise InvalidGeneratorError(
                f"the copied chunked body ends inside a chunk of {size} bytes"
            )
        pieces.append(data[start : start + size])
        newline = _LINE_END.match(data, start + size)
        if newline is None:
            raise InvalidGeneratorError(
                f"the copied chunked body has no line break after a chunk of {size} bytes"
            )
        position = newline.end()


def _shown(text: str) -> str:
    """A line of the copy for an error message: cut short, credentials in it masked."""
    text = redact(text, [])
    return repr(text if len(text) <= 60 else f"{text[:57]}...")
