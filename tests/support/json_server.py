"""The skeleton the test protocol servers share: JSON over HTTP/1.1 on 127.0.0.1, in a thread.

A server module writes a `JsonHandler` subclass (its `do_GET` / `do_POST`) and a state object
the handler reaches as `self.server.state`, then serves them with `serve(...)`.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

StateT = TypeVar("StateT")


class StatefulServer(ThreadingHTTPServer, Generic[StateT]):
    """A threading HTTP server on 127.0.0.1 holding the `state` its handlers share."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: StateT, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes its socket before the answer is sent.
        error = sys.exc_info()[1]
        if not isinstance(error, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class JsonHandler(BaseHTTPRequestHandler):
    """Reads JSON request bodies and writes JSON answers, with keep-alive and no access log."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK of the headers (~40 ms per answer), as no real server would.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def read_json(self) -> dict[str, Any]:
        """The request body as JSON (an empty object when there is none)."""
        length = int(self.headers.get("Content-Length") or 0)
        body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
        return body

    def send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer with `data` as the whole body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(
        self,
        status: int,
        payload: Mapping[str, Any],
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer with `payload` as a JSON body."""
        self.send_bytes(status, json.dumps(payload).encode(), content_type, headers)


@contextmanager
def serve(
    handler: type[JsonHandler],
    state: StateT,
    port: int = 0,
    *,
    server_class: type[StatefulServer[StateT]] = StatefulServer,
) -> Iterator[int]:
    """Serve `handler` with `state` on 127.0.0.1 until the block ends; yields the port.

    `port` 0 takes a free one; `server_class` may be a `StatefulServer` subclass (a larger
    backlog, say). The server is shut down and its socket closed on the way out, also when the
    block fails.
    """
    server = server_class(handler, state, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
