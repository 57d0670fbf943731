"""An OpenAI-protocol server (a scripted one: `scripted_server`) whose model calls tools.

The model it plays knows two tools, `add(a, b)` and `multiply(a, b)`. A conversation's round is
the number of assistant messages it already holds: in each of the first `ROUNDS` rounds the model
asks for both tools at once (two parallel calls), on numbers taken from the previous round's
tool results (or from the prompt, `"start N"`); then it answers in text, quoting the last
results. So a chat goes right only if every tool result came back to the right call.

Plain answers are a whole chat completion; streamed ones (`"stream": true`) cut each call's
arguments in two pieces, and the text in words, as real servers do, with a usage chunk last.
A prompt `"always"` makes the model call tools in every round, forever (for `max_depth`); a
prompt `"broken N"` makes it ask for `divide`, a tool the test makes raise.
"""

from __future__ import annotations

import json
import re
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

__all__ = ["ROUNDS", "calls_for", "expected_answer", "serve_tool_model", "tool_messages"]

ROUNDS = 3
"""Rounds in which the model asks for tools before it answers."""

USAGE = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}


def _start(messages: list[dict[str, Any]]) -> tuple[str, int]:
    first = next(m for m in messages if m["role"] == "user")
    content = first["content"] if isinstance(first["content"], str) else ""
    kind, _, number = content.partition(" ")
    return kind, int(number or 0)


def tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool results after the last assistant message."""
    tail: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        tail.insert(0, message)
    return tail


def calls_for(round: int, a: int, b: int, name: str = "add") -> list[dict[str, Any]]:
    """The calls the model asks for in `round`, on `a` and `b`."""
    second = "multiply" if name == "add" else name
    return [
        {
            "id": f"call_{round}_0",
            "type": "function",
            "function": {"name": "add", "arguments": json.dumps({"a": a, "b": b})},
        },
        {
            "id": f"call_{round}_1",
            "type": "function",
            "function": {"name": second, "arguments": json.dumps({"a": a, "b": b})},
        },
    ]


def expected_answer(start: int) -> str:
    """What the model finally says for a prompt `"start N"` when every tool answered right."""
    a, b = start, 1
    for _ in range(ROUNDS):
        a, b = a + b, a * b
    return f"The results are {a} and {b}."


def _reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message the model answers `messages` with."""
    kind, number = _start(messages)
    round = sum(1 for m in messages if m["role"] == "assistant")
    results = tool_messages(messages)
    if round == 0:
        a, b = number, 1
    else:
        by_id = {m["tool_call_id"]: m["content"] for m in results}
        try:
            a, b = int(by_id[f"call_{round - 1}_0"]), int(by_id[f"call_{round - 1}_1"])
        except (KeyError, ValueError):  # a tool's error: the model gives up, saying so
            return {"role": "assistant", "content": f"A tool failed: {sorted(by_id.values())}"}
    if kind == "broken":
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": calls_for(round, a, b, "divide"),
        }
    if kind == "always" or round < ROUNDS:
        return {"role": "assistant", "content": None, "tool_calls": calls_for(round, a, b)}
    return {"role": "assistant", "content": f"The results are {a} and {b}."}


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": "chatcmpl-tools",
        "object": "chat.completion",
        "model": "tool-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def _chunks(message: dict[str, Any]) -> list[dict[str, Any]]:
    head = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "model": "tool-model"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    calls = message.get("tool_calls") or []
    for index, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        start = {"id": call["id"], "type": "function"}
        function = {"name": call["function"]["name"], "arguments": arguments[:half]}
        chunks.append(chunk({"tool_calls": [{"index": index, **start, "function": function}]}))
    for index, call in enumerate(calls):  # the second halves after all first ones: interleaved
        rest = call["function"]["arguments"][len(call["function"]["arguments"]) // 2 :]
        chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": rest}}]}))
    for word in re.findall(r"\s*\S+", message.get("content") or ""):
        chunks.append(chunk({"content": word}))
    chunks.append(chunk({}, "tool_calls" if calls else "stop"))
    chunks.append({**head, "choices": [], "usage": USAGE})
    return chunks


def _script(request: ReceivedRequest, answer: Answer) -> None:
    body = request.json()
    message = _reply(body["messages"])
    if body.get("stream"):
        answer.write(sse_answer(_chunks(message)))
        answer.close()
    else:
        answer.write(http_answer(200, _completion(message)))


@contextmanager
def serve_tool_model() -> Iterator[ScriptedServer]:
    """The tool-calling model on a free port of 127.0.0.1; its base URL is `url + "/v1"`."""
    with serve_script(_script) as server:
        yield server
