"""jib's own HTTP/1.1 client (`jib._wire.http1`), through the wire, against a raw TCP server
whose answers are scripted byte by byte: keep-alive, the ways an answer's body ends, compression,
and what must never happen to a pooled connection (reused after a cut, a cancellation or an
answer the server closed)."""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Sequence

import pytest

from jib._wire import Wire, WireRequest, WireSettings
from jib._wire.http1 import Http1Transport
from jib._wire.transports import open_transport
from jib.errors import MalformedResponseError, ProcessingError, ProviderConnectionError
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)


class _Sender:
    wire_label = "test!http1"

    def wire_secrets(self) -> Sequence[str | None]:
        return ["s3cret"]


SENDER = _Sender()


def _post(url: str, body: bytes = b'{"q": 1}', **headers: str) -> WireRequest:
    return WireRequest("POST", url, {"Content-Type": "application/json", **headers}, body)


class _Connections:
    """Which connection (the client's port) carried each request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def note(self, answer: Answer) -> None:
        self.seen.append(answer.peer)

    @property
    def count(self) -> int:
        return len(set(self.seen))


def test_plain_requests_go_through_jibs_client_and_others_through_the_libraries() -> None:
    async def main() -> list[str]:
        made = [
            open_transport(WireSettings()),
            open_transport(WireSettings(cookies=True)),
            open_transport(WireSettings(proxy="http://127.0.0.1:9")),
        ]
        for transport in made:
            await transport.aclose()
        return [type(transport).__name__ for transport in made]

    assert asyncio.run(main()) == [Http1Transport.__name__, "_Aiohttp", "_Httpx"]


def test_requests_one_after_another_share_one_kept_alive_connection() -> None:
    connections = _Connections()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        connections.note(answer)
        answer.write(http_answer(200, {"n": request.json()["q"]}))

    async def main(url: str) -> list[bytes]:
        wire = Wire(WireSettings())
        try:
            return [
                (await wire.send(_post(url, f'{{"q": {i}}}'.encode()), SENDER)).body
                for i in range(5)
            ]
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        bodies = asyncio.run(main(f"{server.url}/v1/x"))
    assert bodies == [f'{{"n": {i}}}'.encode() for i in range(5)]
    assert connections.count == 1


def test_what_goes_on_the_wire_host_length_defaults_and_an_encoded_target() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(http_answer(200, {}))

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            await wire.send(_post(url, b"12345", **{"X-Custom": "yes"}), SENDER)
            await wire.send(WireRequest("GET", url.replace("/a b", "/c")), SENDER)
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        asyncio.run(main(f"http://user:pa%20ss@127.0.0.1:{server.port}/a b/é?x=1 2"))
        first, second = server.requests
    assert first.method == "POST"
    assert first.path == "/a%20b/%C3%A9?x=1%202"
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == "5"
    assert first.body == b"12345"
    assert first.headers["x-custom"] == "yes"
    assert first.headers["accept-encoding"] == "gzip, deflate"
    assert first.headers["authorization"] == "Basic dXNlcjpwYSBzcw=="  # user:pa ss
    assert second.method == "GET" and "content-length" not in second.headers


def test_a_body_in_pieces_arrives_whole() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(http_answer(200, request.body))

    pieces = (b'{"image": "', b"A" * 300_000, b'"}')

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings())
        try:
            request = WireRequest("POST", url, {"Content-Type": "application/json"}, pieces)
            return (await wire.send(request, SENDER)).body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == b"".join(pieces)


def _chunked(parts: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.mark.parametrize(
    ("answer_bytes", "body"),
    [
        pytest.param(_chunked([b"hel", b"lo ", b"world"]), b"hello world", id="chunked"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", b"to the end", id="to-eof"
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", id="http-1.0-length"
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n" + http_answer(200, b"after"), b"after", id="100"
        ),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", b"", id="204"),
    ],
)
def test_every_way_an_answer_ends_gives_its_whole_body_and_the_next_request_works(
    answer_bytes: bytes, body: bytes
) -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        if request.path == "/next":
            answer.write(http_answer(200, b"next"))
            return
        answer.write(answer_bytes)
        if b"Connection: close" in answer_bytes or answer_bytes.startswith(b"HTTP/1.0"):
            answer.close()

    async def main(url: str) -> tuple[bytes, bytes]:
        wire = Wire(WireSettings())
        try:
            first = await wire.send(_post(f"{url}/first"), SENDER)
            second = await wire.send(_post(f"{url}/next"), SENDER)
            return first.body, second.body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == (body, b"next")


def test_an_answer_to_head_has_no_body_whatever_its_length_says() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        if request.method == "HEAD":
            answer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            answer.write(http_answer(200, b"after head"))

    async def main(url: str) -> tuple[int, bytes, bytes]:
        wire = Wire(WireSettings())
        try:
            head = await wire.send(WireRequest("HEAD", url), SENDER)
            after = await wire.send(_post(url), SENDER)
            return head.status, head.body, after.body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == (200, b"", b"after head")


def _compressed(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return raw.compress(data) + raw.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_decompressed(encoding: str) -> None:
    data = b'{"text": "' + b"compressible " * 5000 + b'"}'

    def script(request: ReceivedRequest, answer: Answer) -> None:
        name = "deflate" if encoding == "raw-deflate" else encoding
        answer.write(
            http_answer(200, _compressed(encoding, data), headers={"Content-Encoding": name})
        )

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings())
        try:
            return (await wire.send(_post(url), SENDER)).body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == data


def test_a_compressed_bomb_stops_at_max_response_bytes() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)

    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(http_answer(200, bomb, headers={"Content-Encoding": "gzip"}))

    async def main(url: str) -> None:
        wire = Wire(WireSettings(max_response_bytes=1_000_000))
        try:
            await wire.send(_post(url), SENDER)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(ProcessingError, match="max_response"):
        asyncio.run(main(server.url))


@pytest.mark.parametrize(
    ("answer_bytes", "error", "words"),
    [
        pytest.param(
            http_answer(200, b"xx", headers={"Content-Encoding": "br"}),
            MalformedResponseError,
            "compressed as 'br'",
            id="unknown-encoding",
        ),
        pytest.param(
            http_answer(200, b"not gzip", headers={"Content-Encoding": "gzip"}),
            MalformedResponseError,
            "corrupt",
            id="corrupt-gzip",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            MalformedResponseError,
            "not valid HTTP",
            id="bad-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"x" * 300_000 + b"\r\n\r\n",
            MalformedResponseError,
            "headers are over",
            id="endless-headers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            ProviderConnectionError,
            "before the whole answer arrived",
            id="cut",
        ),
    ],
)
def test_broken_answers_become_jib_errors(
    answer_bytes: bytes, error: type[Exception], words: str
) -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(answer_bytes)
        answer.close()

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            await wire.send(_post(url), SENDER)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(error, match=words):
        asyncio.run(main(server.url))


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    connections = _Connections()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        connections.note(answer)
        answer.write(http_answer(200, b"fine"))  # says nothing of closing, then closes
        answer.close()

    async def main(server: ScriptedServer) -> list[bytes]:
        wire = Wire(WireSettings())
        bodies = []
        try:
            for sent in range(1, 4):
                bodies.append((await wire.send(_post(server.url), SENDER)).body)
                # The server has closed the connection, the loop not yet run since: the end of
                # file waits unread on the idle socket when the next request takes it.
                server.wait_closed(sent)
        finally:
            await wire.aclose()
        return bodies

    with serve_script(script) as server:
        assert asyncio.run(main(server)) == [b"fine"] * 3
    assert connections.count == 3


def test_a_cancelled_exchange_closes_its_connection_and_the_next_request_is_answered() -> None:
    started = threading.Event()
    connections = _Connections()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        connections.note(answer)
        if request.path == "/slow":
            answer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            started.set()
            answer.hang()
            return
        answer.write(http_answer(200, b"fresh"))

    async def main(url: str) -> bytes:
        wire = Wire(WireSettings())
        try:
            slow = asyncio.ensure_future(wire.send(_post(f"{url}/slow"), SENDER))
            assert await asyncio.to_thread(started.wait, 10)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            return (await wire.send(_post(f"{url}/next"), SENDER)).body
        finally:
            await wire.aclose()

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == b"fresh"
    assert connections.count == 2


def test_a_large_streamed_answer_arrives_intact_line_by_line() -> None:
    lines = [b"data: " + (b"%06d" % i) * 50 for i in range(20_000)]  # ~6 MB

    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        answer.write(b"Connection: close\r\n\r\n")
        for start in range(0, len(lines), 1000):
            answer.write(b"".join(line + b"\n" for line in lines[start : start + 1000]))
        answer.close()

    async def main(url: str) -> list[bytes]:
        wire = Wire(WireSettings())
        got = []
        try:
            async with wire.stream(_post(url), SENDER) as response:
                async for line in wire.read_lines(response, SENDER):
                    got.append(line)
                    if len(got) % 2000 == 0:
                        await asyncio.sleep(0.001)  # a slow reader: the socket must pause
        finally:
            await wire.aclose()
        return got

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == lines


def test_many_requests_at_once_each_get_their_own_answer() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(http_answer(200, {"n": request.json()["q"]}))

    async def main(url: str) -> list[bytes]:
        wire = Wire(WireSettings())
        try:
            responses = await asyncio.gather(
                *(wire.send(_post(url, f'{{"q": {i}}}'.encode()), SENDER) for i in range(40))
            )
        finally:
            await wire.aclose()
        return [response.body for response in responses]

    with serve_script(script) as server:
        assert asyncio.run(main(server.url)) == [f'{{"n": {i}}}'.encode() for i in range(40)]
