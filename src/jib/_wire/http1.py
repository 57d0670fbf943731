"""jib's own HTTP/1.1 client: the transport for requests straight to a server (no proxy, no
cookie jar), which is nearly every request a batch run sends.

Why not aiohttp's client here: it spends ~75 µs of CPU on every request (its request and response
objects, header multidicts, tracing hooks, timers), three times what the exchange itself needs,
and a run of a million prompts against a self-hosted server is bound by exactly that CPU
(`benchmarks/main_job.py`). This client writes a request's head and body in one buffer, parses
the answer with httptools (llhttp, the parser of Node.js and of aiohttp itself) straight from
the socket's protocol callbacks, and keeps connections alive per origin (an idle one for at most
15 s, as aiohttp). What it does not do is done elsewhere, once, for every transport: redirects,
size bounds and error mapping in the wire, limits, retries and deadlines in the request tier.
Proxies go through httpx, a cookie jar through aiohttp (`transports`).

The connection pool has no limit of its own: the request tier bounds requests in flight. A
connection goes back to the pool only when its request was sent whole, its answer read whole
and the server keeps it alive; a cancelled or failed exchange closes it. An idle connection the
server closed is noticed when its end of file arrives and is never reused.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import select
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote, urlsplit

import httptools
from multidict import CIMultiDict

from jib._wire.failures import AnswerCut, NotHTTP
from jib._wire.models import WireRequest, WireResponse
from jib._wire.settings import WireSettings, unverified_context

if TYPE_CHECKING:
    import ssl

__all__ = ["Http1Transport"]

_USER_AGENT = "jib (python)"
_ACCEPT_ENCODING = "gzip, deflate"
_IDLE_SECONDS = 15.0
"""How long a pooled connection may idle before it is closed instead of reused (aiohttp's
keep-alive default): a middlebox may have forgotten a connection idle for longer, and a request
written into it would wait for an answer that never comes."""
_MOST_HEADER_BYTES = 256 * 1024
"""The largest header section read: a server sending headers without end is cut off here."""
_READ_PAUSE = 256 * 1024
"""Body bytes held unread before the socket stops being read (resumed below a quarter)."""
_SAFE_IN_TARGET = "!$&'()*+,;=:@/?%~-._[]"
"""What a request target keeps as it is; anything else (spaces, non-ASCII) is percent-encoded,
as aiohttp's and curl's URL handling does."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What a URL gives a request: where to connect and what to write."""

    origin: tuple[str, str, int]
    """(scheme, host to connect to, port): the pool's key."""
    host_header: str
    target: str
    authorization: str | None
    """Basic credentials carried in the URL (`user:password@host`), as aiohttp and curl send
    them, unless the request sets its own `Authorization`."""


@functools.lru_cache(maxsize=256)
def _target_of(url: str) -> _Target:
    """`url` split for sending (the wire checked it before: http(s), a host, a valid port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    target = quote(path + (f"?{parts.query}" if parts.query else ""), safe=_SAFE_IN_TARGET)
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return _Target((scheme, host, port), host_header, target, authorization)


def _head(request: WireRequest, target: _Target, body_size: int | None) -> bytes:
    """The request line and headers, ending with the blank line."""
    lines = [f"{request.method.upper()} {target.target} HTTP/1.1"]
    given = set()
    for name, value in request.headers.items():
        given.add(name.lower())
        lines.append(f"{name}: {value}")
    if "host" not in given:
        lines.append(f"Host: {target.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {_USER_AGENT}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append(f"Accept-Encoding: {_ACCEPT_ENCODING}")
    if target.authorization is not None and "authorization" not in given:
        lines.append(f"Authorization: {target.authorization}")
    if body_size is not None and "content-length" not in given:
        lines.append(f"Content-Length: {body_size}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


def _body_size(request: WireRequest) -> int | None:
    body = request.body
    if body is None:
        return 0 if request.method.upper() in ("POST", "PUT", "PATCH") else None
    if isinstance(body, tuple):
        return sum(len(piece) for piece in body)
    return len(body)


class Http1Transport:
    """One event loop's HTTP/1.1 client (see the module docstring)."""

    logs_requests = False

    def __init__(self, settings: WireSettings) -> None:
        self._settings = settings
        self._tls: ssl.SSLContext | None = None if settings.system_tls else _context(settings.tls())
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def hop(self, request: WireRequest, limit: int) -> WireResponse:
        """Send `request` on a pooled connection (or a new one); the body is left to read."""
        if self._closed:
            raise ConnectionAbortedError("the client was closed")
        target = _target_of(request.url)
        size = _body_size(request)
        head = _head(request, target, size)
        connection = await self._connection(target.origin)
        try:
            status, headers = await connection.exchange(head, request.body, request.method)
        except BaseException:
            self._drop(connection)
            raise
        return _Http1Response(self, connection, status, headers, request, limit)

    async def _connection(self, origin: tuple[str, str, int]) -> _Connection:
        idle = self._idle.get(origin)
        if idle:
            loop = asyncio.get_running_loop()
            fresh_since = loop.time() - _IDLE_SECONDS
            while idle:
                connection = idle.pop()
                fresh = connection.idle_since >= fresh_since
                if fresh and connection.reusable and connection.quiet:
                    return connection
                self._drop(connection)
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        # Happy eyeballs is asyncio's own: uvloop's `create_connection` takes no such argument.
        eyeballs: dict[str, Any] = (
            {"happy_eyeballs_delay": 0.25} if isinstance(loop, asyncio.BaseEventLoop) else {}
        )
        _, connection = await loop.create_connection(
            lambda: _Connection(origin),
            host,
            port,
            ssl=tls,
            server_hostname=host if tls is not None else None,
            **eyeballs,
        )
        self._open.add(connection)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = _context(self._settings.tls())
        return self._tls

    def release(self, connection: _Connection) -> None:
        """Take back `connection` after its answer was read whole (or close it)."""
        if connection.reusable and not self._closed:
            now = connection.idle_since = asyncio.get_running_loop().time()
            idle = self._idle.setdefault(connection.origin, [])
            # The oldest idle connections are first: after a burst, those past their time are
            # closed here rather than left open until a burst as large comes again.
            while idle and idle[0].idle_since < now - _IDLE_SECONDS:
                self._drop(idle.pop(0))
            idle.append(connection)
        else:
            self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def aclose(self) -> None:
        """Close every connection, idle or not."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        # The sockets close on the loop's next turn; `asyncio.run` closes the loop right after.
        await asyncio.sleep(0)

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called."""
        return self._closed


def _context(tls: ssl.SSLContext | bool) -> ssl.SSLContext:
    """An `SSLContext` for asyncio from the wire's TLS setting (`False`: no verification)."""
    if tls is False:
        return unverified_context()
    if tls is True:  # not made by `WireSettings.tls`, which gives a context when it verifies
        import ssl

        return ssl.create_default_context()
    return tls


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer as bytes arrive."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.idle_since = 0.0
        """The loop's time when the connection last went back to the pool."""
        self._transport: asyncio.Transport | None = None
        self._parser: Any = httptools.HttpResponseParser(self)
        # What aiohttp's parser forgives a server (bare LF line ends, spaces after a chunk size,
        # odd bytes in a header value), so a server that worked with it still does.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self._lost = False
        self._busy = False
        self._header_pairs: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._bodiless_bytes = 0
        """Bytes received in a row without any of the body: the head, chunk framing, trailers
        (the parser holds a header or a trailer without bound until its line ends)."""
        self._body_arrived = False
        self._head: asyncio.Future[tuple[int, CIMultiDict[str]]] | None = None
        self._headers_done = False
        self._informational = False
        self._to_eof = False
        self._no_body = False
        self._complete = False
        self._error: BaseException | None = None
        self.chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._more: asyncio.Future[None] | None = None

    # -- used by the transport ---------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Whether another request may go out on this connection now: not when the last
        request is still being written (the server answered early), as what follows it would be
        read as part of its body. Over TLS asyncio hands a body's encrypted bytes to the socket's
        own buffer at once, where they are not counted: there a server that answers early and
        keeps the connection must read the rest of the body first, as HTTP/1.1 asks of it."""
        transport = self._transport
        return (
            not self._busy
            and not self._lost
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    @property
    def quiet(self) -> bool:
        """Whether nothing waits to be read on this idle connection's socket. A server that closed
        it (or wrote to it unasked) makes it readable before the loop has run the callbacks that
        say so, which a busy loop may not do before the next request goes out."""
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return True
        try:
            poller = select.poll()
        except AttributeError:  # Windows has no poll(); its select() takes any socket
            return not select.select([sock.fileno()], [], [], 0)[0]
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    async def exchange(
        self, head: bytes, body: bytes | tuple[bytes, ...] | None, method: str
    ) -> tuple[int, CIMultiDict[str]]:
        """Write one request; the status and headers of its answer (the body follows)."""
        transport = self._transport
        assert transport is not None
        self._busy = True
        self._header_pairs = []
        self._header_bytes = self._bodiless_bytes = 0
        self._body_arrived = False
        self._headers_done = self._complete = self._informational = False
        self._to_eof = False
        self._no_body = method.upper() == "HEAD"
        self._error = None
        self.chunks.clear()
        self._buffered = 0
        if self._paused:
            # The last answer's unread rest tipped reading into a pause, then was dropped.
            self._paused = False
            transport.resume_reading()
        waiter: asyncio.Future[tuple[int, CIMultiDict[str]]]
        waiter = self._head = asyncio.get_running_loop().create_future()
        if body is None:
            transport.write(head)
        elif isinstance(body, bytes):
            transport.write(head + body)
        else:
            transport.writelines((head, *body))
        return await waiter

    @property
    def complete(self) -> bool:
        """Whether the whole answer arrived."""
        return self._complete

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as received, `None` at its end.

        Raises:
            AnswerCut: the connection closed before the whole body arrived.
            NotHTTP: the body is not valid HTTP (a bad chunk size, …).
        """
        while not self.chunks:
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._more = asyncio.get_running_loop().create_future()
            try:
                await self._more
            finally:
                self._more = None
        chunk = self.chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < _READ_PAUSE // 4 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    def done(self) -> None:
        """The exchange is over: the connection may carry the next request."""
        self._busy = False

    def close(self) -> None:
        """Close the socket (at once, dropping anything unsent); a reader of the answer's body
        is told it was cut, rather than left waiting for bytes that no longer come."""
        self._lost = True
        if not self._complete and self._error is None:
            self._error = AnswerCut("the connection was closed before the whole answer was read")
            self._wake()
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of `asyncio.Transport` (uvloop's).
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy or self._complete:
            # Bytes nobody asked for (a second answer, garbage): the connection is spoiled.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(NotHTTP("the server switched protocols, which was not asked for"))
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised; that error says more than the wrapper.
            said = exc.__context__ if isinstance(exc.__context__, NotHTTP) else None
            self._fail(said or NotHTTP(f"the answer is not valid HTTP/1.1 ({exc})"))
            return
        if self._body_arrived:
            self._body_arrived = False
            self._bodiless_bytes = 0
        elif not self._complete:
            self._bodiless_bytes += len(data)
            if self._bodiless_bytes > _MOST_HEADER_BYTES:
                self._fail(
                    NotHTTP(
                        f"the answer's headers (or chunk framing, trailers) are over "
                        f"{_MOST_HEADER_BYTES} bytes"
                    )
                )

    def eof_received(self) -> bool:
        self._lost = True
        self._ended()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._ended(exc)
        self._transport = None

    def _ended(self, exc: Exception | None = None) -> None:
        if not self._busy or self._complete:
            return
        if exc is not None:
            self._fail(exc)  # what the socket or TLS said (a refused client certificate, …)
        elif self._headers_done and self._to_eof:
            self._finish()
        elif self._headers_done:
            self._fail(AnswerCut("the connection closed before the whole answer arrived"))
        else:
            self._fail(ConnectionResetError("the server closed the connection without answering"))

    def _fail(self, error: BaseException) -> None:
        self._lost = True
        if self._error is None:
            self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        more = self._more
        if more is not None and not more.done():
            more.set_result(None)

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: what follows the first is not part of it.
            raise NotHTTP("the server sent more than one answer to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > _MOST_HEADER_BYTES:
            raise NotHTTP(f"the answer's headers are over {_MOST_HEADER_BYTES} bytes")
        self._header_pairs.append(
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status: int = self._parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True  # `100 Continue` and the like: the answer follows
            self._header_pairs = []
            return
        headers = CIMultiDict(self._header_pairs)
        self._headers_done = True
        if self._no_body:
            # An answer to HEAD has no body, whatever its headers say; the parser cannot be told
            # so, and would wait for one: the answer ends here and the connection is not reused.
            self._lost = True
            self._finish()
        elif status not in (204, 304) and "Content-Length" not in headers:
            encoding = headers.get("Transfer-Encoding", "")
            self._to_eof = "chunked" not in encoding.lower()
        head = self._head
        if head is not None and not head.done():
            head.set_result((status, headers))

    def on_body(self, body: bytes) -> None:
        self._body_arrived = True
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_PAUSE and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._parser.should_keep_alive():
            self._lost = True  # closed once the body is read: see `reusable`
        self._finish()


class _Http1Response(WireResponse):
    __slots__ = ("_connection", "_transport")

    def __init__(
        self,
        transport: Http1Transport,
        connection: _Connection,
        status: int,
        headers: CIMultiDict[str],
        request: WireRequest,
        limit: int,
    ) -> None:
        # A compressed body's length is not the length read; an answer to HEAD, a 204 and a 304
        # have no body, whatever length they name (the body a GET would get).
        bodiless = status in (204, 304) or request.method.upper() == "HEAD"
        encoded = "Content-Encoding" in headers
        declared = None if encoded or bodiless else headers.get("Content-Length")
        super().__init__(status, headers, request, declared_length=declared, limit=limit)
        self._transport: Http1Transport | None = transport
        self._connection = connection

    async def _chunks(self) -> AsyncIterator[bytes]:
        decoder = _decoder(self.headers.get("Content-Encoding"))
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if chunk is None:
                break
            if decoder is None:
                yield chunk
                continue
            # Bounded pieces: a compressed bomb never expands past what the reader stops at.
            piece = decoder.decompress(chunk, _READ_PAUSE)
            while piece:
                yield piece
                piece = decoder.decompress(decoder.unconsumed_tail, _READ_PAUSE)
        if decoder is not None:
            rest = decoder.flush()
            if rest:
                yield rest

    async def aclose(self) -> None:
        transport = self._transport
        if transport is None:
            return
        self._transport = None
        connection = self._connection
        connection.done()
        if connection.complete:
            transport.release(connection)
        else:
            transport._drop(connection)


class _Decompressor:
    """zlib's decompressor for a gzip or deflate body; deflate comes with or without zlib's
    header, so which one is told by its first byte."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._decoder: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if name == "gzip" else None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, most: int) -> bytes:
        """At most `most` bytes of what `data` expands to (the rest: `unconsumed_tail`)."""
        if self._decoder is None:
            raw = len(data) >= 1 and (data[0] & 0x0F) != 8  # not a zlib header: raw deflate
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        try:
            piece: bytes = self._decoder.decompress(data, most)
        except zlib.error as exc:
            raise NotHTTP(f"the answer's {self._name} body is corrupt ({exc})") from None
        self.unconsumed_tail = self._decoder.unconsumed_tail
        return piece

    def flush(self) -> bytes:
        """What is left once the body has all been given."""
        return b"" if self._decoder is None else bytes(self._decoder.flush())


def _decoder(encoding: str | None) -> _Decompressor | None:
    if encoding is None:
        return None
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return _Decompressor("gzip")
    if name == "deflate":
        return _Decompressor("deflate")
    raise NotHTTP(f"the answer is compressed as {encoding!r}, which jib cannot decode")
