"""A server that fails on a schedule: the fault-injection suite's and benchmark's peer.

It listens on 127.0.0.1 (a real socket, one thread per connection, a backlog for 100+ at once)
and speaks:

- the OpenAI wire format, `POST /v1/chat/completions` and `POST /v1/completions`
  (non-streaming), for the LiteLLM `openai/` path;
- a plain JSON endpoint, `POST /plain` taking `{"prompt": "..."}` and answering
  `{"answer": "..."}`, for `http!` and callbacks.

Every good answer is `answer_for(prompt)`: the prompt followed by a hash of it, so a client
checks it got its own answer and not another request's. The prompt of a chat is the content of
its last message.

Which request fails, and how, is the `schedule`'s choice (see `Every`, `Seeded`,
`FirstAttempts`, `Always`, `At`): it is asked with the request's arrival number (1, 2, … since
the last reset) and the attempt number of its prompt (1 for the first request carrying that
prompt), and answers a `Fault` or `None`:

- `Fault.error(status)`, `Fault.rate_limit(retry_after=1, retry_after_ms=None)`: an error
  status with an OpenAI-style error body (and `Retry-After` / `retry-after-ms` headers);
- `Fault.reset()`: part of the status line and headers, then a TCP reset (SO_LINGER 0);
- `Fault.drop()`: a TCP reset before any byte of the answer;
- `Fault.truncated()`: status 200 and the full `Content-Length`, then half the body and close;
- `Fault.slow(seconds)`: the good answer, that much later.

A chat's good answer may be the `reply` hook's instead (a message dict for a request body: a
model that calls tools, say).

`delay` holds every good answer that long; a fault may be held until an instant (`until`) or
until a number of requests drawing it have arrived (`together`). A held request notices when its
client goes away (the server then drops it), and `reset` lets every held request go at once.

The state records each request (`Request`: arrival number, prompt, attempt, fault, start and end
on the `time.monotonic()` clock, how many were in flight when it arrived, its outcome), and
counts requests in flight and open connections. It is shared with the handler threads; read it
through its methods, which take the lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tests.support.json_server import JsonHandler, StatefulServer, serve

__all__ = [
    "NO_FAULTS",
    "Always",
    "At",
    "Every",
    "Fault",
    "FaultState",
    "FirstAttempts",
    "Request",
    "RunningFaultInjection",
    "Schedule",
    "Seeded",
    "answer_for",
    "eventually",
    "run_fault_injection",
]

FaultKind = Literal["error", "reset", "drop", "truncated", "slow"]

GATE_SECONDS = 60.0
"""The longest a `together` fault holds its requests when fewer arrive than it waits for."""


def answer_for(prompt: str) -> str:
    """The answer the server gives `prompt`: the prompt and a hash only that prompt yields."""
    return f"{prompt} [{hashlib.sha256(prompt.encode()).hexdigest()[:12]}]"


@dataclass(frozen=True)
class Fault:
    """What the server does instead of (or before) a good answer. Build with the classmethods.

    Attributes:
        kind: "error", "reset", "drop", "truncated" or "slow".
        status: the status of an "error".
        retry_after / retry_after_ms: header values an "error" carries, when set.
        seconds: how long the request is held before the fault (for "slow", before the answer).
        until: or the `time.monotonic()` instant it is held until, so that requests arriving
            at different times get their faults together.
        together: or hold it until this many requests drawing this same fault have arrived
            since the reset (at most `GATE_SECONDS`), then let them all go at once: a burst
            however slowly a busy machine sends it.
    """

    kind: FaultKind
    status: int = 200
    retry_after: str | None = None
    retry_after_ms: str | None = None
    seconds: float = 0.0
    until: float | None = None
    together: int = 0

    @classmethod
    def error(
        cls, status: int, *, hold: float = 0.0, until: float | None = None, together: int = 0
    ) -> Fault:
        """Answer `status` with an OpenAI-style error body, after `hold` seconds (or at the
        `time.monotonic()` instant `until`, or once `together` such requests are held)."""
        return cls("error", status=status, seconds=hold, until=until, together=together)

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | str | None = 1,
        *,
        retry_after_ms: float | None = None,
        hold: float = 0.0,
        until: float | None = None,
        together: int = 0,
    ) -> Fault:
        """A 429 with `Retry-After: retry_after` (seconds or an HTTP date; `None`: no header)
        and, when given, `retry-after-ms`, after `hold` seconds (or at the instant `until`, or
        once `together` such requests are held)."""
        return cls(
            "error",
            status=429,
            retry_after=_header_number(retry_after),
            retry_after_ms=_header_number(retry_after_ms),
            seconds=hold,
            until=until,
            together=together,
        )

    @classmethod
    def reset(cls) -> Fault:
        """Part of the status line and headers, then a TCP reset."""
        return cls("reset")

    @classmethod
    def drop(cls) -> Fault:
        """A TCP reset before any byte of the answer."""
        return cls("drop")

    @classmethod
    def truncated(cls) -> Fault:
        """Status 200 and the whole body's `Content-Length`, then half the body and close."""
        return cls("truncated")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """The good answer, `seconds` late."""
        return cls("slow", seconds=seconds)

    @property
    def fails(self) -> bool:
        """Whether the client gets no answer from this request (all kinds but "slow")."""
        return self.kind != "slow"

    @property
    def label(self) -> str:
        """A short name for counting: the status of an error, the kind otherwise."""
        return str(self.status) if self.kind == "error" else self.kind


def _header_number(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}"


# -- schedules ------------------------------------------------------------------------------


class Schedule(Protocol):
    """Chooses the fault of a request from its arrival number and its prompt's attempt number."""

    def __call__(self, number: int, attempt: int) -> Fault | None: ...


@dataclass(frozen=True)
class Every:
    """Arrival `n` gets the fault of the first `(period, fault)` rule whose period divides `n`."""

    rules: Sequence[tuple[int, Fault]]

    def __call__(self, number: int, attempt: int) -> Fault | None:
        return next((fault for period, fault in self.rules if number % period == 0), None)


@dataclass(frozen=True)
class Seeded:
    """A `fraction` of arrivals fail, each with one of `faults`; the draw for arrival `n`
    depends only on `seed` and `n`, so a run with the same arrivals gets the same faults."""

    seed: int
    fraction: float
    faults: Sequence[Fault]

    def __call__(self, number: int, attempt: int) -> Fault | None:
        draw = random.Random(self.seed * 1_000_003 + number)
        return draw.choice(self.faults) if draw.random() < self.fraction else None


@dataclass(frozen=True)
class FirstAttempts:
    """The first `count` attempts of every prompt get `fault`; later ones are answered."""

    count: int
    fault: Fault

    def __call__(self, number: int, attempt: int) -> Fault | None:
        return self.fault if attempt <= self.count else None


@dataclass(frozen=True)
class Always:
    """Every request gets `fault`."""

    fault: Fault

    def __call__(self, number: int, attempt: int) -> Fault | None:
        return self.fault


@dataclass(frozen=True)
class At:
    """The arrivals numbered in `faults` get their fault; the others are answered."""

    faults: Mapping[int, Fault]

    def __call__(self, number: int, attempt: int) -> Fault | None:
        return self.faults.get(number)


NO_FAULTS: Schedule = At({})
"""Every request is answered."""


# -- state ----------------------------------------------------------------------------------


@dataclass
class Request:
    """One request the server received.

    Attributes:
        number: its arrival number since the last reset, from 1.
        prompt: the prompt it carried (the last message of a chat).
        attempt: how many requests carried this prompt so far, this one included.
        path: the URL path.
        fault: what the schedule chose (`None`: a good answer).
        start / end: when it arrived and when its answer (or fault) left, on `time.monotonic()`.
        in_flight: requests in flight when it arrived, itself included.
        outcome: "answered", the fault's label, or "client closed" (gone while held).
    """

    number: int
    prompt: str
    attempt: int
    path: str
    fault: Fault | None
    start: float
    in_flight: int
    epoch: int
    release: threading.Event
    gate: threading.Event | None = None
    end: float | None = None
    outcome: str = "pending"


@dataclass
class _Gate:
    """Requests drawing one `together` fault: how many arrived, and the event letting them go."""

    arrived: int = 0
    opened: threading.Event = field(default_factory=threading.Event)


@dataclass
class FaultState:
    """The schedule and what the server saw since the last `reset`; shared with its threads."""

    schedule: Schedule = NO_FAULTS
    delay: float = 0.0
    reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    _requests: list[Request] = field(default_factory=list)
    _attempts: Counter[str] = field(default_factory=Counter)
    _in_flight: int = 0
    _max_in_flight: int = 0
    _connections: dict[int, socket.socket] = field(default_factory=dict)
    _max_connections: int = 0
    _epoch: int = 0
    _release: threading.Event = field(default_factory=threading.Event)
    _gates: dict[Fault, _Gate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(
        self,
        schedule: Schedule = NO_FAULTS,
        *,
        delay: float = 0.0,
        reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Forget every request, close every connection, let held requests go; then follow
        `schedule`, hold good answers `delay` seconds, and answer chats with `reply(body)` (the
        assistant message) when given."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self._epoch += 1
            self._gates.clear()
            self.schedule = schedule
            self.delay = delay
            self.reply = reply
            self._requests.clear()
            self._attempts.clear()
            self._in_flight = self._max_in_flight = 0
            connections = list(self._connections.values())
            self._connections.clear()
            self._max_connections = 0
        for connection in connections:  # the handler's next read ends, and its thread with it
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- what the server saw ------------------------------------------------------------------

    def requests(self) -> list[Request]:
        """Every request since the reset, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def total_requests(self) -> int:
        """How many requests arrived since the reset."""
        with self._lock:
            return len(self._requests)

    def attempts(self) -> Counter[str]:
        """How many requests carried each prompt."""
        with self._lock:
            return Counter(self._attempts)

    def answered(self) -> Counter[str]:
        """How many good answers went out for each prompt."""
        with self._lock:
            return Counter(r.prompt for r in self._requests if r.outcome == "answered")

    def faults(self) -> Counter[str]:
        """How many failing faults were injected, by label ("429", "503", "reset", …)."""
        with self._lock:
            return Counter(r.fault.label for r in self._requests if r.fault and r.fault.fails)

    def starts(self) -> list[float]:
        """When each request arrived (`time.monotonic()`), in arrival order."""
        with self._lock:
            return [r.start for r in self._requests]

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered, now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests in flight at once since the reset."""
        with self._lock:
            return self._max_in_flight

    @property
    def open_connections(self) -> int:
        """Client connections open now (opened since the reset)."""
        with self._lock:
            return len(self._connections)

    @property
    def max_open_connections(self) -> int:
        """The most client connections open at once since the reset."""
        with self._lock:
            return self._max_connections

    # -- bookkeeping for the handler ----------------------------------------------------------

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[id(connection)] = connection
            self._max_connections = max(self._max_connections, len(self._connections))

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(id(connection), None)

    def _arrive(self, prompt: str, path: str) -> Request:
        with self._lock:
            self._attempts[prompt] += 1
            attempt = self._attempts[prompt]
            number = len(self._requests) + 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            fault = self.schedule(number, attempt)
            request = Request(
                number=number,
                prompt=prompt,
                attempt=attempt,
                path=path,
                fault=fault,
                start=time.monotonic(),
                in_flight=self._in_flight,
                epoch=self._epoch,
                release=self._release,
                gate=self._pass_gate(fault),
            )
            self._requests.append(request)
            return request

    def _pass_gate(self, fault: Fault | None) -> threading.Event | None:
        """The event that lets a `together` fault's requests go, opened by the last of them."""
        if fault is None or not fault.together:
            return None
        gate = self._gates.setdefault(fault, _Gate())
        gate.arrived += 1
        if gate.arrived >= fault.together:
            gate.opened.set()
        return gate.opened

    def _leave(self, request: Request, outcome: str) -> None:
        with self._lock:
            request.end = time.monotonic()
            request.outcome = outcome
            if request.epoch == self._epoch:
                self._in_flight -= 1


# -- the protocol -----------------------------------------------------------------------------


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        messages = body["messages"] or [{}]
        content = messages[-1].get("content", "")
        if isinstance(content, list):  # content parts
            return " ".join(str(part.get("text", "")) for part in content)
        return str(content)
    prompt = body.get("prompt", "")
    return " ".join(prompt) if isinstance(prompt, list) else str(prompt)


def _good_answer(
    path: str,
    body: dict[str, Any],
    prompt: str,
    number: int,
    reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    answer = answer_for(prompt)
    if path.startswith("/plain"):
        return {"answer": answer}
    prompt_tokens, completion_tokens = len(prompt.split()), len(answer.split())
    common = {
        "id": f"cmpl-{number}",
        "created": int(time.time()),
        "model": body.get("model", "fault-model"),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if path.endswith("/chat/completions"):
        message = reply(body) if reply else {"role": "assistant", "content": answer}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return {**common, "object": "chat.completion", "choices": [choice]}
    choice = {"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}
    return {**common, "object": "text_completion", "choices": [choice]}


_ERROR_TYPES = {429: "rate_limit_exceeded", 500: "server_error", 503: "overloaded"}


def _error_body(status: int, number: int) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "invalid_request_error")
    message = f"injected fault: HTTP {status} for request {number}"
    return {"error": {"message": message, "type": kind, "code": kind}}


class _Handler(JsonHandler):
    server: StatefulServer[FaultState]

    def setup(self) -> None:
        super().setup()
        self.server.state._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # the fault already closed the socket
            pass
        finally:
            self.server.state._closed(self.connection)

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "fault-model", "object": "model"}]})

    def do_POST(self) -> None:
        state = self.server.state
        body = self.read_json()
        request = state._arrive(_prompt_of(body), self.path)
        fault = request.fault
        good = fault is None or not fault.fails
        hold = (state.delay if good else 0.0) + (fault.seconds if fault else 0.0)
        if fault and fault.until is not None:
            hold = max(0.0, fault.until - request.start)
        if request.gate is not None:
            hold = GATE_SECONDS
        if hold and not self._hold(hold, request.release, request.gate):
            state._leave(request, "client closed")
            self._abort()
            return
        # Out of flight before the answer leaves: a client that got it may send its next
        # request at once, and that one must not be counted alongside this one.
        state._leave(request, "answered" if fault is None or good else fault.label)
        if fault is None or good:
            answer = _good_answer(self.path, body, request.prompt, request.number, state.reply)
            self.send_json(200, answer)
        elif fault.kind == "error":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = fault.retry_after_ms
            self.send_json(fault.status, _error_body(fault.status, request.number), headers=headers)
        elif fault.kind == "reset":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
            self._abort()
        elif fault.kind == "drop":
            self._abort()
        else:  # truncated
            answer = _good_answer(self.path, body, request.prompt, request.number, state.reply)
            data = json.dumps(answer)
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data[: len(data) // 2].encode()
            )
            self._close()

    def _hold(
        self, seconds: float, release: threading.Event, gate: threading.Event | None = None
    ) -> bool:
        """Wait `seconds` (less if the state is reset or `gate` opens); False if the client
        went away."""
        deadline = time.monotonic() + seconds
        watching = True
        while (
            (left := deadline - time.monotonic()) > 0
            and not release.is_set()
            and not (gate is not None and gate.is_set())
        ):
            step = min(left, 0.05)
            if not watching:
                (gate or release).wait(step)
                continue
            readable, _, _ = select.select([self.connection], [], [], step)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return False  # the client closed its end
                except OSError:
                    return False
                watching = False  # it sent more (pipelining): stop watching, keep holding
        return True

    def _abort(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0) instead of a clean close."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._close()

    def _close(self) -> None:
        self.close_connection = True
        self.rfile.close()  # drops the file's hold on the socket, so close() closes it now
        self.connection.close()


class _FaultServer(StatefulServer[FaultState]):
    request_queue_size = 256  # a burst of 100+ connections must not overflow the backlog


@dataclass
class RunningFaultInjection:
    """A started fault-injection server.

    Attributes:
        url: its base URL, `http://127.0.0.1:PORT`.
        state: its schedule and recordings.
    """

    url: str
    state: FaultState

    @property
    def openai_base(self) -> str:
        """The base URL of the OpenAI protocol (`…/v1`), for `api_base=`."""
        return f"{self.url}/v1"

    @property
    def plain_url(self) -> str:
        """The URL of the plain JSON endpoint."""
        return f"{self.url}/plain"


@contextmanager
def run_fault_injection() -> Iterator[RunningFaultInjection]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    state = FaultState()
    with serve(_Handler, state, server_class=_FaultServer) as port:
        try:
            yield RunningFaultInjection(f"http://127.0.0.1:{port}", state)
        finally:
            state.reset()  # let held requests go and close connections: shutdown need not wait


async def eventually(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition()` became true within `timeout` seconds (checked every 10 ms, with
    the event loop running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True
