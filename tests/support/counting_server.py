"""An OpenAI-protocol chat server on 127.0.0.1 that numbers its answers, for response-cache
tests: every answer is different, so a test can tell a kept answer from a new one.

It speaks `/v1/chat/completions` (plain and streamed) and `/v1/completions` over a real socket
(`tests.support.scripted_server`), keeps every request, and answers by the last user text:

- `error:TEXT`: a 400 with an OpenAI error body (`TEXT` as its message);
- `cut:TEXT`: a stream that stops after one delta (no finish, no `[DONE]`), or a plain body
  cut short;
- `filter:TEXT`: `TEXT #N` stopped by a content filter (`finish_reason: content_filter`);
- `hold:TEXT`: `TEXT #N` once the test sets the server's `hold` event (at once without one);
- anything else: `TEXT #N`, N counting the answers it has made (from 1).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
    sse_answer,
)

__all__ = ["chat_posts", "counting_server", "identifier"]

_USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def _text_of(body: dict[str, Any]) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    message = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", f"[{part['type']}]") for part in content)


@contextmanager
def counting_server(hold: threading.Event | None = None) -> Iterator[ScriptedServer]:
    """The server, on a free port of 127.0.0.1, until the block ends; `hold:` prompts are
    answered once `hold` is set."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        body = request.json()
        text = _text_of(body)
        if hold is not None and text.startswith("hold:"):
            hold.wait(timeout=60)
        if text.startswith("error:"):
            error = {"error": {"message": text.removeprefix("error:"), "type": "invalid"}}
            answer.write(http_answer(400, error))
            return
        with lock:
            number = next(counter)
        reply = f"{text} #{number}"
        finish = "content_filter" if text.startswith("filter:") else "stop"
        if body.get("stream"):
            events: list[Any] = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": reply}}]}
            ]
            if text.startswith("cut:"):
                answer.write(sse_answer(events, done=False))
                answer.close()
                return
            events.append(
                {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": _USAGE}
            )
            answer.write(sse_answer(events))
            answer.close()
            return
        if "prompt" in body:
            choice: dict[str, Any] = {"index": 0, "text": reply, "finish_reason": finish}
        else:
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": finish}
        whole = http_answer(200, {"id": "x", "choices": [choice], "usage": _USAGE})
        if text.startswith("cut:"):
            answer.write(whole[: len(whole) - 10])
            answer.close()
            return
        answer.write(whole)

    with serve_script(script) as server:
        yield server


def identifier(server: ScriptedServer, model: str = "m", **options: Any) -> str:
    """An `openai!` identifier for the server that does not retry."""
    extra = "".join(f",{name}={value}" for name, value in options.items())
    return f"openai!{model},api_base={server.url}/v1,max_retries=0{extra}"


def chat_posts(server: ScriptedServer) -> list[dict[str, Any]]:
    """The request bodies the server received, in order."""
    return [request.json() for request in server.requests if request.method == "POST"]
