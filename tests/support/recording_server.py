"""An HTTP server on 127.0.0.1 that records every request exactly as it arrived (method, raw
target, header pairs, body bytes) and answers `{"reply": "ok <n>"}`.

For tests of specs made from copied requests: the server must see the request the copy
describes, whatever its path, method or body. Optionally it insists on credentials
(`require={"cookie": "…", …}`: a request without those header values gets a 403), as a
chatbot behind a session would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Recorded", "RecordingServer", "serve_recording"]


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The value of header `name` (any case); repeated ones joined with `, `."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """The running server: its base URL and what it received."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    require: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(self.command, self.path, list(self.headers.items()), body)
        running = self.server.running
        with running.lock:
            running.requests.append(recorded)
            number = len(running.requests)
        refused = any(recorded.header(name) != value for name, value in running.require.items())
        status, payload = (
            (403, {"error": {"message": "not signed in"}})
            if refused
            else (200, {"reply": f"ok {number}", "echo": _prompt_of(recorded)})
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


def _prompt_of(recorded: Recorded) -> str | None:
    """The `message` a chatbot form or JSON body carries, for bots that answer it back."""
    kind = recorded.header("Content-Type") or ""
    try:
        if "json" in kind:
            value = recorded.json().get("message")
            return value if isinstance(value, str) else None
        if "x-www-form-urlencoded" in kind:
            return recorded.form().get("message", [None])[0]
    except (ValueError, AttributeError):
        return None
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    running: RecordingServer


@contextmanager
def serve_recording(require: dict[str, str] | None = None) -> Iterator[RecordingServer]:
    """Run the recording server on a free port of 127.0.0.1 until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.running = RecordingServer(
        f"http://127.0.0.1:{server.server_address[1]}", require=dict(require or {})
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.running
    finally:
        server.shutdown()
        server.server_close()
