"""An "attacker" server for the security tests: it records every request it receives.

It listens on 127.0.0.1 and speaks enough of OpenAI's protocol for LiteLLM and `http!` specs to
get an answer (`POST …/chat/completions` echoes the last message). Any other path answers
`{"answer": "ok"}` to GET and POST alike. A prompt `fail:401-partial` gets a 401 whose message
echoes the bearer key partly masked, as OpenAI does (`sk-SECRE****T123`).

Tests assert on `requests` (method, path with query, lowercased headers, body text): a secret that
reached the server is in there; no request at all means nothing was sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_server import JsonHandler, StatefulServer, serve


@dataclass
class Recorded:
    """What the server received, request by request."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def everything(self) -> str:
        """All requests as one text: search it for a secret."""
        with self.lock:
            return json.dumps(self.requests)


def _partly_masked(key: str) -> str:
    return f"{key[:8]}****{key[-4:]}" if len(key) >= 12 else "****"


class _Handler(JsonHandler):
    server: StatefulServer[Recorded]

    def _record(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        with self.server.state.lock:
            self.server.state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
        return body

    def do_GET(self) -> None:
        self._record()
        self.send_json(200, {"answer": "ok"})

    def do_POST(self) -> None:
        body = self._record()
        if not self.path.endswith("/chat/completions"):
            self.send_json(200, {"answer": "ok"})
            return
        payload = json.loads(body or "{}")
        last = str(payload.get("messages", [{}])[-1].get("content", ""))
        if "fail:401-partial" in last:
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {_partly_masked(key)}."
            error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
            self.send_json(401, {"error": error})
            return
        self.send_json(
            200,
            {
                "id": "cmpl-recorded",
                "object": "chat.completion",
                "created": 0,
                "model": payload.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"echo: {last}"},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            },
        )


@dataclass
class RunningRecorder:
    """A started recording server: its origin (`http://127.0.0.1:PORT`) and what it received."""

    origin: str
    recorded: Recorded

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The requests received so far."""
        return self.recorded.requests


@contextmanager
def run_recorder() -> Iterator[RunningRecorder]:
    """Serve the recording server on a free port of 127.0.0.1 until the block ends."""
    recorded = Recorded()
    with serve(_Handler, recorded) as port:
        yield RunningRecorder(f"http://127.0.0.1:{port}", recorded)
