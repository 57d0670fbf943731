"""A raw TCP server on 127.0.0.1 whose every answer is scripted byte by byte.

For the failures no real server produces on purpose — a reset, a dropped connection, a body cut
short, an answer that is not HTTP — and for canned OpenAI-shaped answers, plain or streamed.
Each connection's request is read whole (headers, then `Content-Length` bytes of body) and passed
to the script, which answers through an `Answer`: write bytes, wait, close, or reset.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Answer",
    "ReceivedRequest",
    "ScriptedServer",
    "closed_port",
    "http_answer",
    "serve_script",
    "sse_answer",
]


@dataclass
class ReceivedRequest:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class Answer:
    """What a script may do with its connection."""

    def __init__(self, connection: socket.socket, stop: threading.Event) -> None:
        self._connection = connection
        self._stop = stop
        self.closed = False

    @property
    def peer(self) -> tuple[str, int]:
        """The client's address and port: one per connection."""
        host, port = self._connection.getpeername()[:2]
        return str(host), int(port)

    def write(self, data: bytes) -> None:
        """Send `data` now."""
        self._connection.sendall(data)

    def hang(self) -> None:
        """Say nothing until the client goes away or the server stops."""
        self._connection.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if not self._connection.recv(1024):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        """Close the connection (an orderly end of file for the client)."""
        self.closed = True

    def reset(self) -> None:
        """Close the connection with a TCP reset."""
        self._connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True


Script = Callable[[ReceivedRequest, Answer], None]


@dataclass
class ScriptedServer:
    """A running scripted server: its base URL and the requests it has read."""

    url: str
    port: int
    requests: list[ReceivedRequest] = field(default_factory=list)
    closed: list[tuple[str, int]] = field(default_factory=list)
    """The client address of each connection the server has closed, in order."""

    def wait_closed(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the server has closed `count` connections (a guard, not a bound)."""
        deadline = time.monotonic() + timeout
        while len(self.closed) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server closed {len(self.closed)} of {count} connections")
            time.sleep(0.005)


def http_answer(
    status: int,
    body: bytes | str | Any,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """A whole HTTP/1.1 answer: `body` is bytes, text, or a value written as JSON."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} Status", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def sse_answer(events: list[Any], *, done: bool = True) -> bytes:
    """A server-sent event stream (closed after it): each event as a `data:` line of JSON."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    body = b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)
    return head + body + (b"data: [DONE]\n\n" if done else b"")


def _read_request(stream: Any) -> ReceivedRequest | None:
    start = stream.readline(65536)
    if not start:
        return None
    method, path, _ = start.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = stream.readline(65536).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0") or 0))
    return ReceivedRequest(method, path, headers, body)


@contextmanager
def serve_script(script: Script) -> Iterator[ScriptedServer]:
    """Serve `script` on a free port of 127.0.0.1 until the block ends."""
    stop = threading.Event()
    running: ScriptedServer

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            connection: socket.socket = self.request
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not stop.is_set():
                try:
                    request = _read_request(self.rfile)
                except (OSError, ValueError):
                    return
                if request is None:
                    return
                running.requests.append(request)
                answer = Answer(connection, stop)
                try:
                    script(request, answer)
                except OSError:
                    return
                if answer.closed:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

        def shutdown_request(self, request: Any) -> None:
            try:
                peer = request.getpeername()[:2]
            except OSError:
                peer = ("", 0)
            super().shutdown_request(request)
            running.closed.append(peer)

    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    running = ScriptedServer(f"http://127.0.0.1:{port}", port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        time.sleep(0)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
