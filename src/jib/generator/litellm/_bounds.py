"""The size bound on one LiteLLM response: httpx event hooks that cap what a response may carry.

LiteLLM 1.110 reads every answer of the routes jib bounds through an `httpx.AsyncClient` (over
its aiohttp transport by default, with aiohttp's own decompression off), and httpx decompresses
above the transport. So the bound sits where httpx hands a response over: a response hook on a
client of jib's own (see `_clients`). Before any of the body is read, the hook:

- fails a response whose `Content-Length` (when not compressed) is over the bound;
- decodes `gzip` and `deflate` itself in steps of at most `PIECE` bytes (`zlib`'s
  `max_length`), so a compression bomb never expands past the bound plus one step; httpx then
  gets plain bytes;
- counts what it hands on, body or stream alike, and stops at the bound: the bytes (after
  decompression) plus `LINE_BYTES` for each line. A body, a whole stream and so every SSE or
  NDJSON line in it stay within `max_response_bytes`;
- refuses `br` and `zstd`, which httpx decodes in steps it cannot bound; the request hook offers
  only what jib can bound, so only a misbehaving server sends them.

Going over the bound raises `ProcessingError` inside httpx, which closes the connection
(nothing more is read). LiteLLM wraps it in exceptions of its own; `overflow_in` finds it again.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import httpx

from jib.errors import ProcessingError
from jib.generator.litellm._errors import _chain

__all__ = ["LINE_BYTES", "PIECE", "bounding_hooks", "overflow_in"]

PIECE = 64 * 1024
"""The most one decompression step may produce: a bomb stops within this of the bound."""

LINE_BYTES = 512
"""What each line of an answer counts on top of its bytes. LiteLLM keeps an object of about
5 KB for every streamed chunk it parses (and spends about half a millisecond on it), so a stream
of tiny lines would cost many times its size; charged this, one stream makes at most
`max_response_bytes / 1024` SSE chunks (an event is a data line and a blank one)."""

_DECODED = frozenset({"gzip", "deflate"})
_REFUSED = frozenset({"br", "zstd"})
_STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")

Hook = Callable[..., object]
"""An httpx event hook (LiteLLM's `AsyncHTTPHandler` types them so; jib's are coroutines)."""


def bounding_hooks(limit: int) -> dict[str, list[Hook]]:
    """httpx `event_hooks` that hold every response to `limit` (`max_response_bytes`)."""

    async def on_request(request: httpx.Request) -> None:
        _offer_bounded_encodings(request)

    async def on_response(response: httpx.Response) -> None:
        await _bound(response, limit)

    return {"request": [on_request], "response": [on_response]}


def overflow_in(exc: BaseException) -> ProcessingError | None:
    """The bound's error behind an exception a LiteLLM call raised, if the bound ended it."""
    # Only the hooks raise jib errors inside a LiteLLM call.
    return next((e for e in _chain(exc) if isinstance(e, ProcessingError)), None)


def _too_large(limit: int, what: str) -> ProcessingError:
    return ProcessingError(
        f"the response {what} is over max_response_bytes={limit} (its bytes after "
        f"decompression, plus {LINE_BYTES} for each line); stopped reading it"
    )


def _offer_bounded_encodings(request: httpx.Request) -> None:
    offered = request.headers.get("accept-encoding")
    if offered is None:
        return
    tokens = [token.strip() for token in offered.split(",")]
    kept = [t for t in tokens if t.split(";")[0].strip().lower() not in _REFUSED]
    if len(kept) != len(tokens):
        request.headers["accept-encoding"] = ", ".join(kept) or "identity"


async def _bound(response: httpx.Response, limit: int) -> None:
    headers = response.headers
    what = "stream" if headers.get("content-type", "").startswith(_STREAM_TYPES) else "body"
    encodings = [
        token
        for value in headers.get_list("content-encoding")
        for token in (part.strip().lower() for part in value.split(","))
        if token and token != "identity"
    ]
    refused = next((encoding for encoding in encodings if encoding in _REFUSED), None)
    if refused is not None:
        await response.aclose()
        raise ProcessingError(
            f"the server answered with Content-Encoding {refused!r}, which jib did not ask "
            "for and cannot decode within max_response_bytes"
        )
    declared = headers.get("content-length")
    if not encodings and declared is not None and declared.isdigit() and int(declared) > limit:
        await response.aclose()
        raise ProcessingError(
            f"the response {what} is {int(declared)} bytes; max_response_bytes={limit}"
        )
    # httpx decodes the layers it knows, the last applied first, and passes others through.
    layers = [_Inflater(encoding) for encoding in reversed(encodings) if encoding in _DECODED]
    if layers:
        # Decoded here instead: httpx must see plain bytes, of a length no header states.
        del headers["content-encoding"]
        if "content-length" in headers:
            del headers["content-length"]
    raw = response.stream
    if not isinstance(raw, httpx.AsyncByteStream):  # an async client's never is
        raise TypeError(f"cannot bound a {type(raw).__name__}: the hooks are for async clients")
    response.stream = _BoundedStream(raw, layers, limit, what)


class _Inflater:
    """One `gzip` or `deflate` layer, decoded `PIECE` bytes at a time at most."""

    def __init__(self, encoding: str) -> None:
        gzip = encoding == "gzip"
        # `deflate` comes with its zlib header or (from some servers) without: as httpx, try
        # the header first and fall back to raw deflate if the first bytes are not one.
        self._fallback = not gzip
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The bytes `data` decodes to, in pieces of at most `PIECE`."""
        while True:
            try:
                piece = self._inflate.decompress(data, PIECE)
            except zlib.error as exc:
                if not self._fallback:
                    raise httpx.DecodingError(f"the body does not decode: {exc}") from exc
                self._fallback = False
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._fallback = False
            if piece:
                yield piece
            data = self._inflate.unconsumed_tail
            if not data and len(piece) < PIECE:
                return

    def flush(self) -> Iterator[bytes]:
        """What is left once the body has ended."""
        yield from self.feed(b"")
        try:
            rest = self._inflate.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"the body does not decode: {exc}") from exc
        if rest:
            yield rest


class _BoundedStream(httpx.AsyncByteStream):
    """A body decoded through `layers` (outermost first), stopped at `limit`."""

    def __init__(
        self, raw: httpx.AsyncByteStream, layers: list[_Inflater], limit: int, what: str
    ) -> None:
        self._raw = raw
        self._layers = layers
        self._limit = limit
        self._what = what

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        try:
            async for chunk in self._raw:
                for piece in self._decode(chunk, 0):
                    size += len(piece) + LINE_BYTES * piece.count(b"\n")
                    if size > self._limit:
                        raise _too_large(self._limit, self._what)
                    yield piece
            for piece in self._flush(0):
                size += len(piece) + LINE_BYTES * piece.count(b"\n")
                if size > self._limit:
                    raise _too_large(self._limit, self._what)
                yield piece
        except BaseException:
            await self._raw.aclose()  # drop the connection instead of draining it
            raise

    def _decode(self, data: bytes, layer: int) -> Iterator[bytes]:
        if layer == len(self._layers):
            yield data
            return
        for piece in self._layers[layer].feed(data):
            yield from self._decode(piece, layer + 1)

    def _flush(self, layer: int) -> Iterator[bytes]:
        if layer == len(self._layers):
            return
        for piece in self._layers[layer].flush():
            yield from self._decode(piece, layer + 1)
        yield from self._flush(layer + 1)

    async def aclose(self) -> None:
        await self._raw.aclose()
