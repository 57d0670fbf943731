"""jib's own HTTP/1.1 client (`jib._wire.http1`) at its edges, against real servers on 127.0.0.1
(the scripted server, a raw socket server, uvicorn over TLS): a connection paused mid-answer
then pooled, bytes after an answer's end, heads, framing and 1xx answers without end, a server
answering before the body was all sent, flaws aiohttp forgives, redirects, a stream read after
it closed, answers a byte at a time, https keep-alive, uvloop, bodiless answers' lengths."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jib._wire import Wire, WireRequest, WireSettings
from jib.errors import MalformedResponseError, ProviderConnectionError
from tests.support.mtls import CertificateFiles, make_certificates
from tests.support.scripted_server import Answer, ReceivedRequest, http_answer, serve_script

# A guard against a hang, not a bound on speed: a healthy exchange on loopback takes milliseconds.
_HANG = 30.0


class _Sender:
    wire_label = "test!http1"

    def wire_secrets(self) -> Sequence[str | None]:
        return []


SENDER = _Sender()


async def _send(wire: Wire, url: str) -> bytes:
    response = await asyncio.wait_for(wire.send(WireRequest("GET", url), SENDER), _HANG)
    return response.body


def test_a_connection_whose_reading_was_paused_reads_the_next_answer() -> None:
    # The client stops reading once 256 KiB of body wait unread; when the byte that tips it over
    # is also the last of the answer, the connection goes back to the pool paused.
    body = b"x" * 263_000
    all_sent = threading.Event()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        if request.path != "/big":
            answer.write(http_answer(200, b"next"))
            return
        answer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        answer.write(body[:230_000])
        time.sleep(0.1)  # so the rest arrives in a read of its own
        answer.write(body[230_000:])
        all_sent.set()

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings())
        try:
            async with wire.stream(WireRequest("GET", f"{url}/big"), SENDER):
                assert await asyncio.to_thread(all_sent.wait, _HANG)
                await asyncio.sleep(0.2)  # the answer arrives whole, none of it read
            return await _send(wire, f"{url}/next")
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        # Were the paused connection reused, the next answer would never be read (the guard
        # fails the test). Whether it was reused depends on the answer having arrived whole in
        # time, so the connection count is not asserted: the test must not depend on timing.
        assert asyncio.run(main(server.url)) == b"next"


def test_bytes_after_the_end_of_an_answer_are_not_taken_as_its_body() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        if request.path == "/next":
            answer.write(http_answer(200, b"next"))
            return
        answer.write(http_answer(200, b"ok") + http_answer(200, b"EXTRA"))

    async def main(url: str) -> tuple[bytes, bytes]:
        wire = Wire(WireSettings())
        try:
            return await _send(wire, url), await _send(wire, f"{url}/next")
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == (b"ok", b"next")


@pytest.mark.parametrize(
    ("start", "filler"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Endless: ", b"y" * 65536, id="header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: ",
            b"y" * 65536,
            id="trailer",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;extension=",
            b"y" * 65536,
            id="chunk-extension",
        ),
        pytest.param(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 2500, id="informational"),
    ],
)
def test_an_answer_whose_framing_never_ends_is_cut_off(start: bytes, filler: bytes) -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(start)
        for _ in range(1000):  # 64 MB, unless the client hangs up first
            answer.write(filler)

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            await _send(wire, url)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(MalformedResponseError, match="over"):
        asyncio.run(main(server.url))


@contextlib.contextmanager
def _raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 calling `handle` with each connection (in a thread of its own),
    for exchanges the scripted server cannot play (it reads every request whole first)."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=_serve, args=(handle, connection), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the thread waiting in `accept`
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


def _serve(handle: Callable[[socket.socket], None], connection: socket.socket) -> None:
    with connection:
        connection.settimeout(_HANG)
        with contextlib.suppress(OSError):
            handle(connection)


def _request_line(connection: socket.socket) -> bytes:
    """The first line of what the client sends next (at most 64 KiB read), `b""` at its end."""
    received = b""
    while b"\r\n" not in received and len(received) < 65536:
        data = connection.recv(65536)
        if not data:
            break
        received += data
    return received.split(b"\r\n", 1)[0][:40]


@pytest.mark.parametrize("in_pieces", [False, True], ids=["bytes", "pieces"])
def test_a_connection_whose_request_was_not_all_sent_is_not_reused(in_pieces: bool) -> None:
    # The server answers before reading a large body and keeps the connection: the rest of the
    # body is still on its way, so a request sent after it would be read as part of it.
    first_lines: list[bytes] = []
    after_the_body: list[bool] = []

    def handle(connection: socket.socket) -> None:
        line = _request_line(connection)
        first_lines.append(line)
        if not line.startswith(b"POST"):
            connection.sendall(http_answer(200, b"next"))
            _request_line(connection)
            return
        connection.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")
        tail = b""
        while b"GET /next" not in tail:  # the rest of the body, then what follows it
            data = connection.recv(65536)
            if not data:
                after_the_body.append(False)
                return
            tail = tail[-16:] + data
        after_the_body.append(True)
        connection.sendall(http_answer(200, b"next"))

    async def main(url: str) -> tuple[bytes, bytes]:
        wire = Wire(WireSettings())
        try:
            large = b"z" * 30_000_000
            body = (b"{", large, b"}") if in_pieces else large
            request = WireRequest("POST", url, {}, body)
            first = await asyncio.wait_for(wire.send(request, SENDER), _HANG)
            return first.body, await _send(wire, f"{url}/next")
        finally:
            await wire.aclose()

    with _raw_server(handle) as url:
        assert asyncio.run(main(url)) == (b"big", b"next")
    assert sorted(first_lines) == [b"GET /next HTTP/1.1", b"POST / HTTP/1.1"]
    assert after_the_body == [False]


@pytest.mark.parametrize(
    "answer_bytes",
    [
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", id="lines-end-in-lf"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
            id="space-after-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Note: a\x01b\r\nContent-Length: 5\r\n\r\nhello",
            id="control-character-in-a-value",
        ),
    ],
)
def test_answers_aiohttp_reads_despite_their_flaws_are_read(answer_bytes: bytes) -> None:
    # The leniencies aiohttp's parser grants (the transport this client replaced for most
    # requests): a server that worked before keeps working.
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(answer_bytes)
        answer.close()

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings())
        try:
            return await _send(wire, url)
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == b"hello"


def _echo(request: ReceivedRequest, answer: Answer) -> None:
    seen = {"method": request.method, "headers": request.headers, "body": request.body.decode()}
    answer.write(http_answer(200, seen))


def _redirect(status: int, location: str) -> Callable[[ReceivedRequest, Answer], None]:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        if request.path == "/moved":
            answer.write(http_answer(status, b"moved", headers={"Location": location}))
        else:
            _echo(request, answer)

    return script


async def _post_with_credentials(url: str) -> dict[str, Any]:
    """What the echoing server at the end of the redirects saw of a POST with credentials."""
    headers = {"Authorization": "Bearer sk-1", "X-Api-Key": "sk-1", "Content-Type": "text/plain"}
    wire = Wire(WireSettings())
    try:
        response = await wire.send(WireRequest("POST", url, headers, b"the body"), SENDER)
        return cast(dict[str, Any], json.loads(response.body))
    finally:
        await wire.aclose()


def test_a_307_on_the_same_origin_is_followed_with_its_body_and_credentials() -> None:
    # `http!` keeps cookies, so it sends through aiohttp: the wire's redirects over this client
    # are `openai!`'s, tested here.
    with serve_script(_redirect(307, "/there")) as server:
        seen = asyncio.run(_post_with_credentials(f"{server.url}/moved"))
        assert [request.path for request in server.requests] == ["/moved", "/there"]
    assert seen["method"] == "POST"
    assert seen["body"] == "the body"
    assert seen["headers"]["authorization"] == "Bearer sk-1"
    assert seen["headers"]["x-api-key"] == "sk-1"


def test_a_redirect_to_another_origin_carries_no_credentials() -> None:
    with serve_script(_echo) as other, serve_script(_redirect(302, f"{other.url}/x")) as asked:
        seen = asyncio.run(_post_with_credentials(f"http://user:pw@127.0.0.1:{asked.port}/moved"))
    assert seen["method"] == "GET"
    assert seen["body"] == ""
    assert not {"authorization", "x-api-key", "cookie"} & set(seen["headers"])


def test_reading_an_answer_after_its_stream_closed_fails_instead_of_waiting() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        answer.hang()

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            async with wire.stream(WireRequest("GET", url), SENDER) as response:
                pass
            await asyncio.wait_for(wire.read(response, SENDER), _HANG)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(ProviderConnectionError, match="before"):
        asyncio.run(main(server.url))


_GZIPPED = gzip.compress(b"hello gzip " * 40)
_SPLIT_ANSWERS = {
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b"\r\n5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"hello 0123456789abcdef",
    ),
    "informational-first": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        + http_answer(200, b"after", headers={"Set-Cookie": "a=1"}),
        b"after",
    ),
    "gzip-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n"
        % (len(_GZIPPED), _GZIPPED),
        b"hello gzip " * 40,
    ),
}


@pytest.mark.parametrize("name", sorted(_SPLIT_ANSWERS))
def test_an_answer_written_a_byte_at_a_time_is_read_whole(name: str) -> None:
    # Every boundary falls somewhere: inside a header's name, a chunk size, a CRLF.
    answer_bytes, body = _SPLIT_ANSWERS[name]
    peers: set[tuple[str, int]] = set()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        peers.add(answer.peer)
        for at in range(len(answer_bytes)):
            answer.write(answer_bytes[at : at + 1])
            time.sleep(0.0002)

    async def main(url: str) -> tuple[bytes, list[str], bytes]:
        wire = Wire(WireSettings())
        try:
            first = await asyncio.wait_for(wire.send(WireRequest("GET", url), SENDER), _HANG)
            cookies = [value for name, value in first.header_pairs() if name == "Set-Cookie"]
            return first.body, cookies, await _send(wire, url)  # on the same connection
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        got, cookies, again = asyncio.run(main(server.url))
    assert len(peers) == 1
    assert got == again == body
    assert cookies == (["a=1"] if name == "informational-first" else ["a=1", "b=2"])


@dataclass
class _Uvicorn:
    url: str
    server: uvicorn.Server

    def wait_until_idle(self) -> None:
        """Wait (in a thread) until the server has closed every connection."""
        while self.server.server_state.connections:
            time.sleep(0.02)


async def _which_connection(request: Request) -> Response:
    body = await request.body()
    client = request.client
    return Response(b"%d %d" % (len(body), client.port if client else 0))


@contextlib.contextmanager
def _serve_https(certificates: CertificateFiles, **options: Any) -> Iterator[_Uvicorn]:
    """uvicorn over TLS on 127.0.0.1, answering `<body length> <client port>`."""
    app = Starlette(routes=[Route("/", _which_connection, methods=["POST"])])
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(certificates.server),
        ssl_keyfile=str(certificates.server_key),
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield _Uvicorn(f"https://127.0.0.1:{listener.getsockname()[1]}", server)
    finally:
        server.should_exit = True
        thread.join(_HANG)
        listener.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_https_keeps_its_connection_alive_and_replaces_one_the_server_closed(
    certificates: CertificateFiles,
) -> None:
    async def main(served: _Uvicorn) -> list[bytes]:
        wire = Wire(WireSettings(verify=str(certificates.ca)))
        answers = []
        try:
            for size in (0, 1000, 200_000):
                request = WireRequest("POST", served.url, {}, b"x" * size)
                answers.append((await wire.send(request, SENDER)).body)
            await asyncio.to_thread(served.wait_until_idle)  # it closed the idle connection
            await asyncio.sleep(0.1)  # its close_notify and end of file arrive
            answers.append((await wire.send(WireRequest("POST", served.url), SENDER)).body)
        finally:
            await wire.aclose()
        return answers

    with _serve_https(certificates, timeout_keep_alive=1) as served:
        answers = asyncio.run(main(served))
    sizes, ports = zip(*(answer.split() for answer in answers), strict=True)
    assert sizes == (b"0", b"1000", b"200000", b"0")
    assert ports[0] == ports[1] == ports[2] != ports[3]


def test_requests_are_sent_on_uvloop() -> None:
    # uvloop's `create_connection` takes no `happy_eyeballs_delay`: a run on uvloop failed every
    # request with a TypeError.
    uvloop = pytest.importorskip("uvloop")
    peers: set[tuple[str, int]] = set()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        peers.add(answer.peer)
        answer.write(http_answer(200, b"on uvloop"))

    async def main(url: str) -> list[bytes]:
        wire = Wire(WireSettings())
        try:
            return [await _send(wire, url) for _ in range(3)]
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert uvloop.run(main(server.url)) == [b"on uvloop"] * 3
    assert len(peers) == 1


@pytest.mark.parametrize(
    ("method", "answer_bytes"),
    [
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n", id="head"),
        pytest.param(
            "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000000\r\n\r\n", id="304"
        ),
    ],
)
def test_the_length_of_a_body_an_answer_cannot_have_is_not_held_against_it(
    method: str, answer_bytes: bytes
) -> None:
    # An answer to HEAD names the length of the body a GET would get; it has none itself.
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(answer_bytes)

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings(max_response_bytes=1000))
        try:
            request = WireRequest(method, url)
            return (await asyncio.wait_for(wire.send(request, SENDER), _HANG)).body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == b""
