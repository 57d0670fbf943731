"""jib's own HTTP/1.1 client (`jib._wire.http1`) at its edges, against real servers on 127.0.0.1:
a connection paused mid-answer and then pooled, bytes after the end of an answer, a header that
never ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from jib._wire import Wire, WireRequest, WireSettings
from jib.errors import MalformedResponseError
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
    peers: list[tuple[str, int]] = []

    def script(request: ReceivedRequest, answer: Answer) -> None:
        peers.append(answer.peer)
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
        assert asyncio.run(main(server.url)) == b"next"
    assert len(set(peers)) == 1  # the same connection carried both


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


def test_a_header_that_never_ends_is_cut_off() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(1000):  # 64 MB, unless the client hangs up first
            answer.write(b"y" * 65536)

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            await _send(wire, url)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(MalformedResponseError, match="over"):
        asyncio.run(main(server.url))


def test_answers_that_never_stop_being_informational_are_cut_off() -> None:
    def script(request: ReceivedRequest, answer: Answer) -> None:
        for _ in range(100_000):
            answer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)

    async def main(url: str) -> None:
        wire = Wire(WireSettings())
        try:
            await _send(wire, url)
        finally:
            await wire.aclose()

    with serve_script(script) as server, pytest.raises(MalformedResponseError, match="over"):
        asyncio.run(main(server.url))
