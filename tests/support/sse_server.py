"""An OpenAI-protocol server that streams a chat answer in two pieces, on cue.

For what `transformers serve` cannot show: that text reaches the caller while the answer is still
being generated. `/v1/chat/completions` with `"stream": true` sends the first piece at once, then
waits until `release` is set (or 10 s pass) before sending the second piece, the usage chunk and
`[DONE]`. Without `stream` it answers the whole text as one JSON completion.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_server import JsonHandler, serve

FIRST, SECOND = "first piece ", "second piece"


@dataclass
class StreamState:
    """The cue for the second piece, and the bodies received."""

    release: threading.Event = field(default_factory=threading.Event)
    bodies: list[dict[str, Any]] = field(default_factory=list)


def _chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = {"id": "chatcmpl-sse", "object": "chat.completion.chunk", "model": "sse", **more}
    data["choices"] = [choice] if delta or finish else []
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class _Handler(JsonHandler):
    server: Any

    def do_POST(self) -> None:
        state: StreamState = self.server.state
        body = self.read_json()
        state.bodies.append(body)
        if not body.get("stream"):
            message = {"role": "assistant", "content": FIRST + SECOND}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self.send_json(200, {"id": "chatcmpl-sse", "model": "sse", "choices": [choice]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(_chunk({"role": "assistant", "content": FIRST}))
        self.wfile.flush()
        state.release.wait(10)
        self.wfile.write(_chunk({"content": SECOND}))
        self.wfile.write(_chunk({}, "stop"))
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        self.wfile.write(_chunk({}, None, usage=usage))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@dataclass
class RunningStreamServer:
    """A started server: its base URL (ending in `/v1`) and its `state`."""

    url: str
    state: StreamState


@contextmanager
def run_stream_server() -> Iterator[RunningStreamServer]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    state = StreamState()
    with serve(_Handler, state) as port:  # type: ignore[arg-type]
        try:
            yield RunningStreamServer(f"http://127.0.0.1:{port}/v1", state)
        finally:
            state.release.set()
