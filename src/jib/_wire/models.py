"""What goes over the wire: a `WireRequest` out, a `WireResponse` back with a bounded body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from jib._wire.bodies import read_limited, split_lines
from jib.errors import ProcessingError

__all__ = ["Body", "Headers", "WireRequest", "WireResponse", "origin_of"]

Headers = Mapping[str, str]
"""Response headers: a mapping whose lookups ignore case (`headers.get("content-type")`)."""

Body = bytes | tuple[bytes, ...]
"""A request body: bytes, or pieces sent one after another as one body (a large inline image
between two pieces of JSON goes out without being copied into one buffer first)."""


def origin_of(url: str) -> str:
    """`scheme://host:port` of a URL, without credentials, path or query (safe to log)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme.lower()}://{host.lower()}"


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One request to send. Its repr shows the method, the URL's origin and the header names
    only: URLs and header values often carry keys or tokens."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Body | None = None

    def __repr__(self) -> str:
        return (
            f"WireRequest(method={self.method!r}, origin={origin_of(self.url)!r}, "
            f"headers={sorted(self.headers)!r})"
        )


class WireResponse:
    """A response whose body is read on demand, never past `max_response_bytes`.

    `Wire.send` returns one with its body read (`.body`); `Wire.stream` one to read with
    `Wire.read_lines()` or `Wire.read()`. Either way the connection is released when the body is
    read or `aclose()` is called. Each transport subclasses it with how its library hands over
    the body's bytes (`_chunks`), the headers as sent (`header_pairs`) and the release.

    Attributes:
        status: the HTTP status code.
        headers: the response headers (lookups ignore case).
        request: the request this answers (the last one, when redirects were followed).
        body: the body, once read (`b""` before).
    """

    __slots__ = ("_declared", "_limit", "body", "headers", "request", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        request: WireRequest,
        *,
        declared_length: str | None,
        limit: int,
    ) -> None:
        self.status = status
        self.headers = headers
        self.request = request
        self.body = b""
        self._declared = declared_length
        self._limit = limit

    @property
    def url(self) -> str:
        """The URL this response came from."""
        return self.request.url

    def header_pairs(self) -> list[tuple[str, str]]:
        """Every header as sent, repeated names (`Set-Cookie`) included."""
        return list(self.headers.items())

    def _chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, decompressed."""
        raise NotImplementedError

    async def read(self) -> bytes:
        """The whole body (decompressed), at most `max_response_bytes`; releases the connection.

        Raises:
            ProcessingError: the body is (or says it is) larger than `max_response_bytes`.
        """
        try:
            self.body = await read_limited(self._chunks(), self._declared, self._limit)
        finally:
            await self.aclose()
        return self.body

    async def lines(self) -> AsyncIterator[bytes]:
        """The body line by line (server-sent events, NDJSON), without line breaks.

        Raises:
            ProcessingError: a line is longer than `max_response_bytes`.
        """
        async for line in split_lines(self._chunks(), self._limit):
            yield line

    @property
    def text(self) -> str:
        """The body read as text: the charset `Content-Type` names, else UTF-8 (bad bytes
        replaced)."""
        return self.body.decode(_charset(self.headers.get("Content-Type")), "replace")

    async def aclose(self) -> None:
        """Release the connection (reading the rest of the body is not needed)."""
        raise NotImplementedError


def _charset(content_type: str | None) -> str:
    if content_type:
        for part in content_type.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip().strip('"')
                try:
                    "".encode(charset)
                except LookupError:
                    break
                return charset
    return "utf-8"


def too_large(limit: int) -> ProcessingError:
    """The error for an answer larger than `limit` bytes (for readers that count what they
    keep, such as a stream's deltas)."""
    return ProcessingError(
        f"the answer is over max_response_bytes={limit} bytes; stopped reading it"
    )
