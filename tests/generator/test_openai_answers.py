"""One table of OpenAI-shaped answers, read by `openai!` and by the LiteLLM path (`openai/`):
both read them with the one OpenAI reader, so each answer is the same `GeneratedMessage` (or the
same error) whichever provider fetched it, plain or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import jib
from jib.chat import Chat
from jib.generator import Generator
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
LOGPROBS = {
    "content": [
        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []},
        {"token": "!", "logprob": -1.5, "bytes": [33], "top_logprobs": []},
    ]
}


TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def completion(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
    choice.update(fields.pop("choice", {}))
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [choice],
        **fields,
    }


ANSWERS: dict[str, dict[str, Any]] = {
    "whole": completion({"content": "Hi!"}, usage=USAGE),
    "no total": completion({"content": "Hi!"}, usage={"prompt_tokens": 3, "completion_tokens": 4}),
    "length": completion({"content": "Hi"}, usage=USAGE, choice={"finish_reason": "length"}),
    "logprobs": completion({"content": "Hi!"}, usage=USAGE, choice={"logprobs": LOGPROBS}),
    "empty content": completion({"content": ""}, usage=USAGE),
    "null content": completion({"content": None}, usage=USAGE),
    "unicode": completion({"content": "¿Qué tal? 你好 🎉"}, usage=USAGE),
    "tool call": completion(
        {"content": None, "tool_calls": [TOOL_CALL]},
        usage=USAGE,
        choice={"finish_reason": "tool_calls"},
    ),
}

CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}


def chunk(delta: dict[str, Any], finish: str | None = None, **fields: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**CHUNK, "choices": [choice], **fields}


STREAMS: dict[str, list[dict[str, Any]]] = {
    "whole": [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"content": "!"}),
        chunk({}, "stop"),
        {**CHUNK, "choices": [], "usage": USAGE},
    ],
    "length": [
        chunk({"content": "Hi"}),
        chunk({}, "length"),
        {**CHUNK, "choices": [], "usage": USAGE},
    ],
}


def _script(request: ReceivedRequest, answer: Answer) -> None:
    case = request.path.split("/")[2].replace("_", " ")
    body = request.json()
    if body.get("stream"):
        events = STREAMS.get(case)
        if case == "cut stream":
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            )
            part = chunk({"content": "Hi"})
            import json

            answer.write(head + f"data: {json.dumps(part)}\n\n".encode())
            answer.close()
            return
        assert events is not None, case
        from tests.support.scripted_server import sse_answer

        answer.write(sse_answer(events))
        answer.close()
        return
    if case == "no choices":
        answer.write(
            http_answer(200, {"id": "chatcmpl-1", "object": "chat.completion", "choices": []})
        )
        return
    answer.write(http_answer(200, ANSWERS[case]))


@pytest.fixture(scope="module")
def stub() -> Iterator[ScriptedServer]:
    with serve_script(_script) as running:
        yield running


def generators(stub: ScriptedServer, case: str) -> dict[str, Generator]:
    base = f"{stub.url}/case/{case.replace(' ', '_')}/v1"
    settings = f"api_base={base},api_key=sk-table,max_retries=0"
    return {
        "openai!": jib.get_generator(f"openai!m,{settings}"),
        "litellm": jib.get_generator(f"openai/m,{settings}"),
    }


def comparable(chat: Chat) -> tuple[Any, ...]:
    """What the reader made of the answer (the chat's id and timings aside)."""
    extra = {name: value for name, value in chat.extra.items() if name != "first_delta_ms"}
    return (chat.generated, chat.stop_reason, chat.usage, extra)


@pytest.mark.parametrize("case", sorted(ANSWERS))
async def test_each_answer_reads_the_same_on_openai_and_litellm(
    stub: ScriptedServer, case: str
) -> None:
    read: dict[str, tuple[Any, ...]] = {}
    for name, generator in generators(stub, case).items():
        chat = await generator.chat("hi")
        read[name] = comparable(chat)
    assert read["openai!"] == read["litellm"]


def test_the_table_is_read_as_documented() -> None:
    # What the table means, once: a missing total is the sum; null content is empty text.
    from jib.generator.openai._protocol import read_chat

    assert read_chat(ANSWERS["no total"], "p").usage == jib.Usage(3, 4, 7)
    assert read_chat(ANSWERS["null content"], "p").content == ""
    assert read_chat(ANSWERS["logprobs"], "p").extra["logprobs"] == LOGPROBS
    assert read_chat(ANSWERS["tool call"], "p").stop_reason == "tool_calls"


@pytest.mark.parametrize("case", sorted(STREAMS))
async def test_each_stream_reads_the_same_on_openai_and_litellm(
    stub: ScriptedServer, case: str
) -> None:
    read: dict[str, tuple[Any, ...]] = {}
    for name, generator in generators(stub, case).items():
        stream = generator.chat("hi").stream()
        deltas = [delta async for delta in stream]
        read[name] = (deltas, *comparable(stream.chat))
    assert read["openai!"] == read["litellm"]


@pytest.mark.parametrize("case", ["no choices"])
async def test_a_malformed_answer_is_the_same_error_on_both(
    stub: ScriptedServer, case: str
) -> None:
    for generator in generators(stub, case).values():
        chat = await generator.chat("hi").run(on_failed="include")
        assert type(chat.error) is jib.MalformedResponseError, repr(chat.error)
        assert "no choices" in str(chat.error)


async def test_a_cut_stream_is_the_same_error_on_both(stub: ScriptedServer) -> None:
    for generator in generators(stub, "cut stream").values():
        deltas: list[str] = []
        with pytest.raises(jib.ProviderConnectionError, match="stream ended before the answer"):
            await _read_into(deltas, generator.chat("hi").stream())
        # Given out as they came (LiteLLM holds one chunk back); the end is what failed.
        assert deltas in (["Hi"], ["Hi", "!"])


async def _read_into(deltas: list[str], stream: Any) -> None:
    async for delta in stream:
        deltas.append(delta)
