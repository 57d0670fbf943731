"""A hostile HTTP server for the spec-bounds tests: it records every request and answers with the
bodies a test registered, or echoes the key it was sent in an encoded form.

It listens on 127.0.0.1 on a free port, in a thread of the test process:

- `/body/NAME` answers `bodies[NAME]` (status, content type, bytes), registered by the test;
- `/echo/ENCODING` answers 401 with `{"error": {"message": "invalid key <key, encoded>"}}`,
  the key taken from `Authorization: Bearer …`; ENCODING is one of `ECHOES`;
- anything else answers `{"answer": "ok"}`.

Tests assert on `requests` (method, path, lowercased headers, body text): a secret that reached
the server is in there, and no request at all means nothing was sent.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from tests.support.json_server import JsonHandler, StatefulServer, serve

ECHOES: dict[str, Callable[[str], str]] = {
    "base64": lambda key: base64.b64encode(key.encode()).decode(),
    "base64-unpadded": lambda key: base64.b64encode(key.encode()).decode().rstrip("="),
    "base64-urlsafe": lambda key: base64.urlsafe_b64encode(key.encode()).decode(),
    "basic-auth": lambda key: base64.b64encode(f"user:{key}".encode()).decode(),
    "basic-auth-shifted": lambda key: base64.b64encode(f"me:{key}".encode()).decode(),
    "hex": lambda key: key.encode().hex(),
    "hex-upper": lambda key: key.encode().hex().upper(),
    "percent": lambda key: quote(key, safe=""),
    "percent-plus": lambda key: quote_plus(key + " "),
    "percent-every-byte": lambda key: "".join(f"%{byte:02X}" for byte in key.encode()),
    "percent-every-byte-lower": lambda key: "".join(f"%{byte:02x}" for byte in key.encode()),
}
"""How `/echo/ENCODING` writes the key back."""


@dataclass
class Hostile:
    """What the server received, and the bodies it answers with."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def everything(self) -> str:
        """All requests as one text: search it for a secret."""
        with self.lock:
            return json.dumps(self.requests)


class _Handler(JsonHandler):
    server: StatefulServer[Hostile]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        state = self.server.state
        with state.lock:
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
        path = self.path.split("?", 1)[0]
        if path.startswith("/body/"):
            status, content_type, data = state.bodies[path.removeprefix("/body/")]
            self.send_bytes(status, data, content_type)
        elif path.startswith("/echo/"):
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            echoed = ECHOES[path.removeprefix("/echo/")](key)
            self.send_json(401, {"error": {"message": f"invalid key {echoed}"}})
        else:
            self.send_json(200, {"answer": "ok"})

    do_GET = do_POST = _answer


@dataclass
class RunningHostile:
    """A started hostile server: its origin (`http://127.0.0.1:PORT`) and its state."""

    origin: str
    state: Hostile

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The requests received so far."""
        return self.state.requests

    def serve_body(
        self, name: str, data: bytes | str, *, status: int = 200, content_type: str = ""
    ) -> str:
        """Answer `/body/NAME` with `data`; returns its URL."""
        raw = data.encode() if isinstance(data, str) else data
        kind = content_type or ("application/json" if raw[:1] in (b"{", b"[") else "text/plain")
        self.state.bodies[name] = (status, kind, raw)
        return f"{self.origin}/body/{name}"


@contextmanager
def run_hostile() -> Iterator[RunningHostile]:
    """Serve the hostile server on a free port of 127.0.0.1 until the block ends."""
    state = Hostile()
    with serve(_Handler, state) as port:
        yield RunningHostile(f"http://127.0.0.1:{port}", state)
