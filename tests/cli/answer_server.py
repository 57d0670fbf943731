"""An OpenAI-protocol chat server on 127.0.0.1 whose answers the prompt scripts.

For the CLI's tests of parts, tool calls and structured answers: it speaks
`/v1/chat/completions` over a real socket (`tests.support.scripted_server`), plain or streamed,
and keeps every request body. What it answers depends on the text of the last user message:

- `call:NAME {json}` (one or more, separated by `;`): the assistant calls those tools (ids
  `call_1`, `call_2`, …; the JSON is the arguments as given);
- `say:TEXT`: it answers TEXT as it is (a JSON answer, say);
- anything else: `got N parts: text, image_url, …` naming the types of the parts it received
  (`got 0 parts` for plain text).
"""

from __future__ import annotations

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

__all__ = ["answer_server", "bodies", "identifier", "last_user_text"]


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a request body (its text parts joined)."""
    message = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content if part["type"] == "text")


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    text = last_user_text(body)
    if text.startswith("call:"):
        calls = []
        for number, item in enumerate(text.removeprefix("call:").split(";"), start=1):
            name, _, arguments = item.strip().partition(" ")
            calls.append(
                {
                    "id": f"call_{number}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments or "{}"},
                }
            )
        return {"role": "assistant", "content": None, "tool_calls": calls}
    if text.startswith("say:"):
        return {"role": "assistant", "content": text.removeprefix("say:")}
    message = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    content = message["content"]
    types = [] if isinstance(content, str) else [part["type"] for part in content]
    return {"role": "assistant", "content": f"got {len(types)} parts: {', '.join(types)}"}


def _script(request: ReceivedRequest, answer: Answer) -> None:
    body = request.json()
    message = _reply(body)
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if body.get("stream"):
        delta = {k: v for k, v in message.items() if v is not None}
        for index, call in enumerate(delta.get("tool_calls", [])):
            call["index"] = index
        events = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage},
        ]
        answer.write(sse_answer(events))
        answer.close()
        return
    choice = {"index": 0, "message": message, "finish_reason": finish}
    answer.write(http_answer(200, {"id": "x", "object": "chat.completion", "choices": [choice],
                                   "usage": usage}))  # fmt: skip


@contextmanager
def answer_server() -> Iterator[ScriptedServer]:
    """The server, on a free port of 127.0.0.1."""
    with serve_script(_script) as server:
        yield server


def identifier(server: ScriptedServer, model: str = "m") -> str:
    """An `openai!` identifier for the server that does not retry."""
    return f"openai!{model},api_base={server.url}/v1,max_retries=0"


def bodies(server: ScriptedServer) -> list[dict[str, Any]]:
    """The chat request bodies the server received, in order."""
    return [request.json() for request in server.requests if request.method == "POST"]
