"""Issue 16, items 6 and 8: what a hostile or broken OpenAI-compatible server answers ends as a
jib error for that item only, within its bounds.

- Item 8: usage `1e400` (`OverflowError`), `NaN` or `"many"` (`ValueError`), a message that is a
  string (`AttributeError`) and an SSE line over 512 KiB (`LineTooLong`) each raised a bare
  Python exception that aborted `run_batch(on_failed="include")`; a key ending in a newline did
  too. Now each is a `MalformedResponseError` (or the key's `InvalidGeneratorError`) for its item,
  and the batch's other items are answered.
- Item 6: an endless SSE stream grew to 2 GB; now it ends with `ProcessingError` at
  `max_response_bytes`, in a child process capped at 200 MB, with its CPU time bounded.
Each has a control: the same flow with a normal answer (and a long but legitimate line) works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import jib
from tests.security.capped import CPU_SECONDS, run_capped
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)

KEY = "sk-answers-0123456789abcdef"
GOOD = (
    '{"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]'
)
BROKEN_BODIES = {
    "usage 1e400": GOOD + ', "usage": {"prompt_tokens": 1e400, "completion_tokens": 1}}',
    "usage NaN": GOOD + ', "usage": {"prompt_tokens": NaN, "completion_tokens": 1}}',
    "usage many": GOOD + ', "usage": {"prompt_tokens": "many", "completion_tokens": 1}}',
    "usage negative": GOOD + ', "usage": {"prompt_tokens": -5, "completion_tokens": 1}}',
    "message is text": '{"choices": [{"message": "str", "finish_reason": "stop"}]}',
    "choices is text": '{"choices": "none"}',
    "content is a number": '{"choices": [{"message": {"content": 5}}]}',
    "finish_reason is a list": '{"choices": [{"message": {"content": "x"}, "finish_reason": []}]}',
    "answer is a list": "[1, 2, 3]",
}


def _sse(events: list[str]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    return head + b"".join(f"data: {event}\n\n".encode() for event in events)


def _delta(text: str, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"delta": {"content": text}, "finish_reason": finish}]})


def _script(request: ReceivedRequest, answer: Answer) -> None:
    body = request.json()
    case = body["messages"][-1]["content"]
    if body.get("stream"):
        if case == "long line":  # 600 KiB in one event: over aiohttp's line limit, under ours
            answer.write(_sse([_delta("x" * 600 * 1024), _delta("", "stop"), "[DONE]"]))
        elif case == "huge line":
            answer.write(_sse([_delta("x" * 3_000_000)]))
        elif case.startswith("endless"):
            text = "" if case == "endless and empty" else "y" * 64
            answer.write(_sse([_delta(text)]))
            event = f"data: {_delta(text)}\n\n".encode() * 64
            while True:  # until the client goes away
                answer.write(event)
        else:
            answer.write(_sse([_delta("fine", "stop"), "[DONE]"]))
        answer.close()
        return
    if case in BROKEN_BODIES:
        answer.write(http_answer(200, BROKEN_BODIES[case]))
    else:
        answer.write(http_answer(200, GOOD + "}"))


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with serve_script(_script) as running:
        yield running


def _generator(server: ScriptedServer, **settings: Any) -> jib.Generator:
    return jib.generator.OpenAIGenerator(
        model="m", api_base=f"{server.url}/v1", api_key=KEY, max_retries=0, **settings
    )


async def test_each_malformed_answer_fails_only_its_item(server: ScriptedServer) -> None:
    prompts = ["normal", *BROKEN_BODIES, "also normal"]

    chats = await _generator(server).chat().run_batch(prompts, on_failed="include")

    assert [chat.content for chat in chats if not chat.failed] == ["fine", "fine"]
    assert [chat.messages[-1].content for chat in chats if chat.failed] == list(BROKEN_BODIES)
    for chat in chats[1:-1]:
        assert type(chat.error) is jib.MalformedResponseError, (chat.messages, chat.error)
        assert "not in the OpenAI format" in str(chat.error) or "not valid JSON" in str(chat.error)
        assert chat.error.retryable


async def test_a_well_formed_answer_still_reads_whole(server: ScriptedServer) -> None:
    chat = await _generator(server).chat("normal")

    assert (chat.content, chat.stop_reason) == ("fine", "stop")


async def test_a_key_with_a_line_break_fails_each_item_cleanly(server: ScriptedServer) -> None:
    generator = jib.generator.OpenAIGenerator(
        model="m", api_base=f"{server.url}/v1", api_key=KEY + "\n", max_retries=0
    )

    chats = await generator.chat().run_batch(["a", "b"], on_failed="include")

    for chat in chats:
        assert isinstance(chat.error, jib.InvalidGeneratorError)
        assert "line break" in str(chat.error)
        assert KEY not in str(chat.error)
    assert server.requests == [] or all(
        request.body and b"\n" not in request.headers.get("authorization", "").encode()
        for request in server.requests
    )


async def test_a_long_sse_line_under_the_bound_streams(server: ScriptedServer) -> None:
    stream = _generator(server).chat("long line").stream()
    text = "".join([delta async for delta in stream])

    assert len(text) == 600 * 1024 and stream.chat.stop_reason == "stop"


async def test_an_sse_line_over_the_bound_fails_its_chat(server: ScriptedServer) -> None:
    generator = _generator(server, max_response_bytes=1_000_000)

    chat = await generator.chat("huge line").stream(on_failed="include")

    assert isinstance(chat.error, jib.ProcessingError)
    assert "max_response_bytes=1000000" in str(chat.error)


def case_endless_stream(url: str, prompt: str) -> str:
    """In the capped child: stream an answer that never ends, with the default bounds."""
    import asyncio

    generator = jib.generator.OpenAIGenerator(model="m", api_base=url, max_retries=0)

    async def read() -> str:
        stream = generator.chat(prompt).stream()
        async for _ in stream:
            pass
        return stream.chat.content

    return asyncio.run(read())


@pytest.mark.parametrize("prompt", ["endless", "endless and empty"])
def test_an_endless_stream_ends_at_max_response_bytes(server: ScriptedServer, prompt: str) -> None:
    result = run_capped(case_endless_stream, f"{server.url}/v1", prompt)

    assert result.error_type == "jib.errors.ProcessingError", result.output
    assert "max_response_bytes=16777216" in result.message
    assert result.cpu_seconds < 2 * CPU_SECONDS, result
