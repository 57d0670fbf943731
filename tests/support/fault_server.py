"""An OpenAI-protocol server for what a real server cannot do: faults, counting, recording.

It speaks `/v1/chat/completions` and `/v1/completions` (non-streaming) over a real socket on
127.0.0.1. Answers echo the prompt's words; `max_tokens` cuts them (stop reason `length`).

Faults are chosen per request by the prompt, so one batch can mix good and failing items:
a prompt `fail:429` gets a 429, `fail:401` a 401 (whose message echoes the bearer key back, as
OpenAI does), `fail:400-context` a 400 "maximum context length" error, `fail:500` a 500,
`fail:no-choices` a 200 answer with no choice in it.
A prompt `flaky:N:<tag>` gets a 429 for its first N requests (counted per prompt), then answers.

The server records every request body and the start time of each request, and counts how many
requests are in flight at once (`max_in_flight`). `delay` holds every answer that long, or, with
`together=N`, until N requests are in flight at once (then every held answer goes, and later
ones are not held): so a test sees a client's concurrency however slowly a busy machine sends.
`truncate_to` caps the input tokens it reports, as a server that cut the prompt would.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_server import JsonHandler, StatefulServer, serve

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
NO_CHOICES = "fail:no-choices"
"""A prompt holding this gets a 200 answer without any choice in it."""
_FLAKY = re.compile(r"flaky:(\d+):\S*")

_Answer = tuple[int, dict[str, Any]]


@dataclass
class FaultState:
    """What the server saw, and how it behaves; shared with the handler threads.

    `reset` starts a new epoch: requests still held from before it are let go at once and no
    longer counted, so a slow request of one test cannot skew the next test's counts.
    """

    delay: float = 0.0
    together: int = 0
    truncate_to: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # names lowercased
    in_flight: int = 0
    max_in_flight: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    epoch: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    gathered: threading.Event = field(default_factory=threading.Event)

    def reset(
        self, *, delay: float = 0.0, together: int = 0, truncate_to: int | None = None
    ) -> None:
        """Forget what was recorded; set a new delay (cut short once `together` requests are
        in flight at once, when given) and input-token cap."""
        with self.lock:
            self.release.set()
            self.release = threading.Event()
            self.gathered = threading.Event()
            self.epoch += 1
            self.delay = delay
            self.together = together
            self.truncate_to = truncate_to
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


def _error(status: int, message: str, code: str) -> _Answer:
    return status, {"error": {"message": message, "type": code, "code": code}}


class _Handler(JsonHandler):
    server: StatefulServer[FaultState]

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:
        state = self.server.state
        body = self.read_json()
        with state.lock:
            state.starts.append(time.monotonic())
            state.requests.append(body)
            state.paths.append(self.path)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            if state.together and state.in_flight >= state.together:
                state.gathered.set()
            epoch, release, delay = state.epoch, state.release, state.delay
            gathered = state.gathered if state.together else None
        try:
            if delay:
                _hold(delay, release, gathered)
            status, payload = self._answer(body)
        finally:
            # Out of flight before the answer leaves: a client that got it may start another
            # request at once, and that one must not be counted alongside this one.
            with state.lock:
                if state.epoch == epoch:
                    state.in_flight -= 1
        headers = {"Retry-After": "0"} if status == 429 else None
        self.send_json(status, payload, headers=headers)

    def _flaky_answer(self, text: str) -> _Answer | None:
        flaky = _FLAKY.search(text)
        if not flaky:
            return None
        state = self.server.state
        with state.lock:
            count = state.seen[flaky.group(0)] = state.seen.get(flaky.group(0), 0) + 1
        if count <= int(flaky.group(1)):
            return _error(429, f"Rate limited (attempt {count})", "rate_limit_exceeded")
        return None

    def _answer(self, body: dict[str, Any]) -> _Answer:
        text = _prompt_text(body)
        flaky = self._flaky_answer(text)
        if flaky is not None:
            return flaky
        if NO_CHOICES in text:
            return 200, {"id": "cmpl-stub", "object": "chat.completion", "choices": []}
        for trigger, (status, code, message) in FAULTS.items():
            if trigger in text:
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                return _error(status, message.format(key=key), code)
        words = text.split()
        limit = body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        answer = " ".join(words)
        prompt_tokens = len(text.split())
        truncate_to = self.server.state.truncate_to
        if truncate_to is not None:
            prompt_tokens = min(prompt_tokens, truncate_to)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        common = {"id": "cmpl-stub", "created": int(time.time()), "model": body.get("model")}
        if self.path.endswith("/chat/completions"):
            choice: dict[str, Any] = {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": answer},
            }
            return 200, {**common, "object": "chat.completion", "choices": [choice], "usage": usage}
        choice = {"index": 0, "finish_reason": finish, "text": answer, "logprobs": None}
        return 200, {**common, "object": "text_completion", "choices": [choice], "usage": usage}


def _hold(seconds: float, release: threading.Event, gathered: threading.Event | None) -> None:
    """Wait `seconds`, or until `release` (a reset) or `gathered` is set."""
    if gathered is None:
        release.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not (release.is_set() or gathered.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        gathered.wait(min(left, 0.05))


@dataclass
class RunningFaultServer:
    """A started fault server: its base URL (ending in `/v1`) and its `state`."""

    url: str
    state: FaultState


@contextmanager
def run_fault_server() -> Iterator[RunningFaultServer]:
    """Serve the fault server on a free port of 127.0.0.1 until the block ends."""
    state = FaultState()
    with serve(_Handler, state) as port:
        try:
            yield RunningFaultServer(f"http://127.0.0.1:{port}/v1", state)
        finally:
            state.release.set()  # let held requests go, so shutting down does not wait on them
