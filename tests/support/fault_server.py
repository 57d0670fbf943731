"""An OpenAI-protocol server for what a real server cannot do: faults, counting, recording.

It speaks `/v1/chat/completions` and `/v1/completions` (non-streaming) over a real socket on
127.0.0.1. Answers echo the prompt's words; `max_tokens` cuts them (stop reason `length`).

Faults are chosen per request by the prompt, so one batch can mix good and failing items:
a prompt `fail:429` gets a 429, `fail:401` a 401 (whose message echoes the bearer key back, as
OpenAI does), `fail:400-context` a 400 "maximum context length" error, `fail:500` a 500.
A prompt `flaky:N:<tag>` gets a 429 for its first N requests (counted per prompt), then answers.

The server records every request body and the start time of each request, and counts how many
requests are in flight at once (`max_in_flight`). `delay` holds every answer that long.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS: dict[str, tuple[int, str, str]] = {
    "fail:429": (429, "rate_limit_exceeded", "Rate limit reached for requests. Try again later."),
    "fail:401": (401, "invalid_api_key", "Incorrect API key provided: {key}."),
    "fail:400-context": (
        400,
        "context_length_exceeded",
        "This model's maximum context length is 16 tokens. However, your messages resulted in "
        "9000 tokens. Please reduce the length of the messages.",
    ),
    "fail:500": (500, "server_error", "The server had an error while processing your request."),
}
_FLAKY = re.compile(r"flaky:(\d+):\S*")


@dataclass
class FaultState:
    """What the server saw, and how it behaves; shared with the handler threads."""

    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # names lowercased
    in_flight: int = 0
    max_in_flight: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, *, delay: float = 0.0) -> None:
        """Forget what was recorded and set a new delay."""
        with self.lock:
            self.delay = delay
            self.requests.clear()
            self.paths.clear()
            self.starts.clear()
            self.headers.clear()
            self.in_flight = 0
            self.max_in_flight = 0
            self.seen.clear()


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body["messages"])
    prompt = body.get("prompt", "")
    return " ".join(prompt) if isinstance(prompt, list) else str(prompt)


class _Handler(BaseHTTPRequestHandler):
    server: _FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with state.lock:
            state.starts.append(time.monotonic())
            state.requests.append(body)
            state.paths.append(self.path)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay:
                time.sleep(state.delay)
            self._answer(body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> None:
        text = _prompt_text(body)
        flaky = _FLAKY.search(text)
        if flaky:
            state = self.server.state
            with state.lock:
                count = state.seen[flaky.group(0)] = state.seen.get(flaky.group(0), 0) + 1
            if count <= int(flaky.group(1)):
                error = {
                    "message": f"Rate limited (attempt {count})",
                    "type": "rate_limit_exceeded",
                }
                self._send(429, {"error": error})
                return
        for trigger, (status, code, message) in FAULTS.items():
            if trigger in text:
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                error = {"message": message.format(key=key), "type": code, "code": code}
                self._send(status, {"error": error})
                return
        words = text.split()
        limit = body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        answer = " ".join(words)
        usage = {
            "prompt_tokens": len(text.split()),
            "completion_tokens": len(words),
            "total_tokens": len(text.split()) + len(words),
        }
        common = {"id": "cmpl-stub", "created": int(time.time()), "model": body.get("model")}
        if self.path.endswith("/chat/completions"):
            choice: dict[str, Any] = {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": answer},
            }
            self._send(
                200, {**common, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        else:
            choice = {"index": 0, "finish_reason": finish, "text": answer, "logprobs": None}
            self._send(
                200, {**common, "object": "text_completion", "choices": [choice], "usage": usage}
            )


class _FaultServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes its socket before the answer is sent.
        error = sys.exc_info()[1]
        if not isinstance(error, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def __init__(self, state: FaultState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class RunningFaultServer:
    """A started fault server: its base URL (ending in `/v1`) and its `state`."""

    url: str
    state: FaultState


@contextmanager
def run_fault_server() -> Iterator[RunningFaultServer]:
    """Serve the fault server on a free port of 127.0.0.1 until the block ends."""
    state = FaultState()
    server = _FaultServer(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        port = server.server_address[1]
        yield RunningFaultServer(f"http://127.0.0.1:{port}/v1", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
