"""`openai!` beyond text: the wire shape of each part, prompt-cache marks and cached tokens,
refusals, streamed tool calls put back together, a body encoded once per item however often it
is sent, and a text completion refusing what only a chat can carry."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

import jib
from jib import ContentAudioInput, ContentFile, ContentImageUrl, ContentText, Message
from jib.errors import ProcessingError
from tests.support.openai_chat_server import RunningOpenAIChatServer
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    http_answer,
    serve_script,
    sse_answer,
)
from tests.support.stub_model import Reply, ToolUse

MARK = {"type": "ephemeral"}
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


async def test_each_part_goes_out_in_its_openai_shape(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")
    parts = [
        ContentText("Compare these."),
        ContentImageUrl.from_url("https://example.com/cat.png", detail="low"),
        ContentImageUrl.from_bytes(b"GIF89a", "image/gif", detail="high"),
        ContentAudioInput.from_bytes(b"ID3", "mp3"),
        ContentFile.from_bytes(b"%PDF", "application/pdf"),
    ]

    chat = await generator.chat([Message("user", parts)]).run()

    assert openai_chat_server.state.requests[0]["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/gif;base64,R0lGODlh", "detail": "high"},
        },
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERg=="}},
    ]
    assert chat.content == "Received: text, image url, image/gif, audio/mp3, application/pdf"


async def test_a_part_the_server_refuses_fails_with_the_servers_word_not_silently(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    # OpenAI's chat API takes files inline or uploaded, not by URL: it says so.
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")
    document = ContentFile.from_url("https://example.com/report.pdf")

    chat = await generator.chat([Message("user", [document])]).run(on_failed="include")

    sent = openai_chat_server.state.requests[0]["messages"][0]["content"]
    assert sent == [{"type": "file", "file": {"file_url": "https://example.com/report.pdf"}}]
    assert isinstance(chat.error, jib.errors.BadRequestError)
    assert "file.file_data or file.file_id" in str(chat.error)


async def test_a_plain_string_message_still_goes_out_as_a_string(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")

    await generator.chat([Message("system", "Be brief."), Message("user", "hi")]).run()

    assert openai_chat_server.state.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def _marked() -> list[Message]:
    return [
        Message("system", "A long shared preamble.", cache_control=MARK),
        Message("user", [ContentText("A long document.", cache_control=MARK)]),
    ]


async def test_cache_marks_reach_servers_that_may_read_them(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")

    await generator.chat(_marked()).run()

    messages = openai_chat_server.state.requests[0]["messages"]
    assert messages[0]["cache_control"] == MARK
    assert messages[1]["content"][0]["cache_control"] == MARK


async def test_cache_marks_stay_away_from_openais_own_api_which_caches_by_itself() -> None:
    # The request goes through a proxy (this server), so api.openai.com is never contacted.
    def answer(request: ReceivedRequest, reply: Answer) -> None:
        reply.write(http_answer(200, COMPLETION))

    with serve_script(answer) as proxy:
        generator = jib.get_generator(
            f"openai!gpt-4o-mini,api_base=http://api.openai.com/v1,proxy={proxy.url},api_key=sk-x"
        )
        await generator.chat(_marked()).run()

    [request] = proxy.requests
    assert request.path == "http://api.openai.com/v1/chat/completions"
    assert request.json()["messages"] == [
        {"role": "system", "content": "A long shared preamble."},
        {"role": "user", "content": [{"type": "text", "text": "A long document."}]},
    ]


async def test_openais_automatic_cache_shows_in_the_cached_input_tokens(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")
    preamble = [Message("system", "You are a careful reader of very long documents.")]

    first = await generator.chat([*preamble, Message("user", "One?")]).run()
    second = await generator.chat([*preamble, Message("user", "Two?")]).run()
    streamed = await generator.chat([*preamble, Message("user", "Three?")]).stream()

    assert first.usage is not None and second.usage is not None and streamed.usage is not None
    assert first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens == 9  # the preamble's words
    assert streamed.usage.cached_input_tokens == 9
    assert second.usage.to_dict()["cached_input_tokens"] == 9


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_refusal_comes_back_as_the_refusal_text(stream: bool) -> None:
    refusal = "I can't help with that."

    def answer(request: ReceivedRequest, reply: Answer) -> None:
        if request.json().get("stream"):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
            reply.write(
                sse_answer(
                    [
                        {
                            **chunk,
                            "choices": [
                                {"index": 0, "delta": {"role": "assistant", "refusal": ""}}
                            ],
                        },
                        {**chunk, "choices": [{"index": 0, "delta": {"refusal": "I can't "}}]},
                        {
                            **chunk,
                            "choices": [{"index": 0, "delta": {"refusal": "help with that."}}],
                        },
                        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    ]
                )
            )
        else:
            message = {"role": "assistant", "content": None, "refusal": refusal}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply.write(http_answer(200, {**COMPLETION, "choices": [choice]}))

    with serve_script(answer) as server:
        generator = jib.get_generator(f"openai!m,api_base={server.url}")
        messages = [Message("user", "Something it declines.")]
        params = jib.GenerateParams()
        if stream:
            pieces = [p async for p in generator.stream_messages(messages, params)]
            generated = pieces[-1]
        else:
            [generated] = await generator.generate_messages([messages], [params])

    assert isinstance(generated, jib.GeneratedMessage)
    assert generated.refusal == refusal
    assert generated.content == ""


@pytest.mark.parametrize("interleaved", [False, True], ids=["in-order", "interleaved"])
@pytest.mark.parametrize("bang", [True, False], ids=["openai!", "litellm-openai"])
async def test_streamed_tool_call_deltas_are_put_back_together_by_index(
    openai_chat_server: RunningOpenAIChatServer, interleaved: bool, bang: bool
) -> None:
    openai_chat_server.state.interleave_calls = interleaved
    calls = (
        ToolUse("lookup", {"query": "tides at Brest", "days": [1, 2]}),
        ToolUse("lookup", {"query": "moon phase"}),
        ToolUse("convert", {"value": 12.5, "unit": "m"}),
    )
    openai_chat_server.state.script.add(Reply("Checking.", calls))
    identifier = (
        f"openai!m,api_base={openai_chat_server.url}"
        if bang
        else f"openai/m,api_base={openai_chat_server.url},api_key=sk-x"
    )

    stream = jib.get_generator(identifier).chat("Tides?").with_(tools=[TOOL]).stream()
    pieces = [piece async for piece in stream]

    assert "".join(pieces) == "Checking."
    got = stream.chat.last.tool_calls
    assert [(c.id, c.function.name, c.parsed_arguments()) for c in got] == [
        (f"call_stub_{n}", call.name, call.arguments) for n, call in enumerate(calls, 1)
    ]
    assert stream.chat.stop_reason == "tool_calls"


@contextmanager
def counting_body_encodings() -> Iterator[list[int]]:
    """Count the request bodies JSON-encoded in this thread (calls of `JSONEncoder.encode`
    with a chat body), by watching the interpreter, not by changing jib."""
    seen: list[int] = []
    code = json.JSONEncoder.encode.__code__

    def watch(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            value = frame.f_locals.get("o")
            if isinstance(value, dict) and "messages" in value:
                seen.append(len(value["messages"]))

    sys.setprofile(watch)
    try:
        yield seen
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_body_is_encoded_once_per_item_however_often_it_is_sent(stream: bool) -> None:
    image = ContentImageUrl.from_bytes(bytes(range(256)) * 4096, "image/png")  # 1 MiB

    def flaky(request: ReceivedRequest, reply: Answer) -> None:
        if len(server.requests) <= 2:
            reply.write(http_answer(503, {"error": {"message": "busy", "type": "server_error"}}))
        elif request.json().get("stream"):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
            delta = {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
            reply.write(sse_answer([{**chunk, "choices": [delta]}]))
        else:
            reply.write(http_answer(200, COMPLETION))

    with serve_script(flaky) as server:
        generator = jib.get_generator(f"openai!m,api_base={server.url},retry_backoff=0")
        pipeline = generator.chat([Message("user", [ContentText("What is it?"), image])])
        with counting_body_encodings() as encoded:
            chat = await (pipeline.stream() if stream else pipeline.run())

    assert chat.content == "ok"
    assert chat.attempts == 3
    assert len(server.requests) == 3
    assert server.requests[0].body == server.requests[1].body == server.requests[2].body
    assert encoded == [1]


async def test_each_item_of_a_batch_sends_its_own_body(
    openai_chat_server: RunningOpenAIChatServer,
) -> None:
    generator = jib.get_generator(f"openai!m,api_base={openai_chat_server.url}")
    prompts = [f"prompt {n}" for n in range(20)]

    chats = await generator.chat().run_batch(prompts)

    assert [chat.content for chat in chats] == ["Received: text"] * 20
    sent = sorted(body["messages"][0]["content"] for body in openai_chat_server.state.requests)
    assert sent == sorted(prompts)


async def test_a_text_completion_refuses_tools_and_audio_before_sending() -> None:
    def answer(request: ReceivedRequest, reply: Answer) -> None:
        reply.write(http_answer(200, {"choices": [{"text": "x", "finish_reason": "stop"}]}))

    with serve_script(answer) as server:
        generator = jib.get_generator(f"openai!m,api_base={server.url}")
        completion = (
            await generator.complete("Once upon")
            .with_(tools=[TOOL], modalities=["text", "audio"])
            .run(on_failed="include")
        )
        plain = await generator.complete("Once upon").run()

    assert isinstance(completion.error, ProcessingError)
    assert str(completion.error) == (
        "[openai!m] a text completion cannot carry tools, modalities: it sends a prompt, not a "
        "chat; use .chat() for tools and audio"
    )
    assert completion.error.attempts is None
    assert plain.content == "x"
    assert len(server.requests) == 1
