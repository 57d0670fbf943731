"""An OpenAI-protocol chat server on 127.0.0.1 that holds its answers until enough requests are
in flight, to observe how many a client keeps in flight without timing assertions.

Every POST is counted in flight from when it is read until just before its answer is written
(so the count never runs ahead of the client's own). Answers wait until `hold_for` requests are
in flight at once, or until `patience` seconds pass with no new request (a client capped below
`hold_for` then goes on); from then on the server answers at once. `peak` is the most requests
it had in flight. It speaks `/v1/chat/completions` without streaming, over a real socket
(`tests.support.scripted_server`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)

__all__ = ["Holding", "holding_server"]

_USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


@dataclass
class Holding:
    """What the server saw: its scripted server, the peak in flight, the chat posts."""

    server: ScriptedServer
    peak: int = 0
    posts: int = 0
    in_flight: int = 0
    opened: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        """The base URL (`http://127.0.0.1:PORT`)."""
        return self.server.url


@contextmanager
def holding_server(hold_for: int, *, patience: float = 3.0) -> Iterator[Holding]:
    """The server, on a free port of 127.0.0.1, until the block ends."""
    holding: Holding

    def script(request: ReceivedRequest, answer: Answer) -> None:
        text = request.json()["messages"][-1]["content"]
        with holding.lock:
            holding.posts += 1
            holding.in_flight += 1
            holding.peak = max(holding.peak, holding.in_flight)
            if holding.in_flight >= hold_for:
                holding.opened = True
            holding.lock.notify_all()  # a new request: the waiters' patience starts again
            while not holding.opened:
                if not holding.lock.wait(timeout=patience):
                    holding.opened = True
                    holding.lock.notify_all()
            holding.in_flight -= 1
        message = {"role": "assistant", "content": f"re: {text}"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        answer.write(http_answer(200, {"id": "x", "choices": [choice], "usage": _USAGE}))

    with serve_script(script) as server:
        holding = Holding(server)
        yield holding
