"""What the LiteLLM path carries to each provider, and what it refuses before sending.

`jib.generator.litellm._carry.CARRIED_PARTS` says which part types LiteLLM writes into each
provider's request; the first test holds it against LiteLLM itself (called directly, at a server
that records what arrives), so a LiteLLM upgrade that changes one fails here. Through jib, a part
or a beyond-text param a route would lose is refused with a clear error before any request.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import jib
from jib import ContentAudioInput, ContentFile, ContentImageUrl, ContentText, Message
from jib.errors import ProcessingError
from jib.generator.litellm._carry import CARRIED_PARTS
from jib.generator.litellm._runtime import import_litellm
from tests.support.anthropic_server import RunningAnthropicServer
from tests.support.ollama_server import RunningOllama, run_ollama_server
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)
from tests.support.stub_model import Reply, ToolUse

IMAGE, AUDIO, PDF = b"IMAGE-PAYLOAD-0001", b"AUDIO-PAYLOAD-0002", b"%PDF-PAYLOAD-0003"
PARTS: dict[str, tuple[Any, bytes]] = {
    "image_url": (ContentImageUrl.from_bytes(IMAGE, "image/png"), IMAGE),
    "input_audio": (ContentAudioInput.from_bytes(AUDIO, "wav"), AUDIO),
    "file": (ContentFile.from_bytes(PDF, "application/pdf", filename="a.pdf"), PDF),
}
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def recorder() -> Iterator[ScriptedServer]:
    """A server that records each request and refuses it (nothing needs answering here)."""

    def refuse(request: ReceivedRequest, answer: Answer) -> None:
        answer.write(http_answer(400, {"error": {"message": "recorded"}}))

    with serve_script(refuse) as server:
        yield server


def _base(provider: str, server: ScriptedServer) -> str:
    return f"{server.url}/v1beta" if provider == "gemini" else server.url


def _chat(kind: str) -> list[Message]:
    part, _ = PARTS[kind]
    return [Message("user", [ContentText("TEXT-MARK"), part])]


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("provider", sorted(CARRIED_PARTS))
async def test_the_carried_parts_table_says_what_litellm_itself_sends(
    recorder: ScriptedServer, provider: str, kind: str
) -> None:
    litellm = import_litellm()
    recorder.requests.clear()
    _, payload = PARTS[kind]
    # The recorder refuses every request; LiteLLM may refuse first.
    with contextlib.suppress(Exception):
        await litellm.acompletion(
            model=f"{provider}/m",
            messages=[message.to_dict() for message in _chat(kind)],
            api_base=_base(provider, recorder),
            api_key="k",
            max_retries=0,
        )
    sent = b"".join(request.body for request in recorder.requests)
    carried = base64.b64encode(payload) in sent

    assert carried == (kind in CARRIED_PARTS[provider]), (provider, kind, sent[:300])
    if recorder.requests:
        assert b"TEXT-MARK" in sent  # text is carried everywhere


REFUSED = [
    ("anthropic/claude-sonnet-4-5", "input_audio", "anthropic"),
    ("ollama_chat/qwen3:0.6b", "input_audio", "ollama_chat"),
    ("ollama_chat/qwen3:0.6b", "file", "ollama_chat"),
    ("ollama/qwen3:0.6b", "file", "ollama"),
    ("mistral/mistral-small", "input_audio", "mistral"),
    ("deepseek/deepseek-chat", "image_url", "deepseek"),
    ("text-completion-openai/gpt-3.5-turbo-instruct", "image_url", "text-completion-openai"),
]


@pytest.mark.parametrize(("model", "kind", "provider"), REFUSED)
async def test_a_part_litellm_would_leave_out_is_refused_before_anything_is_sent(
    recorder: ScriptedServer, model: str, kind: str, provider: str
) -> None:
    recorder.requests.clear()
    generator = jib.get_generator(f"{model},api_base={_base(provider, recorder)},api_key=k")
    messages = [Message("system", "Be brief."), *_chat(kind)]

    chat = await generator.chat(messages).run(on_failed="include")
    with pytest.raises(ProcessingError) as streamed:
        await generator.chat(messages).stream()

    assert recorder.requests == []
    assert isinstance(chat.error, ProcessingError)
    message = str(chat.error)
    assert message.startswith(f"[{model}] cannot carry ")
    assert f"({kind!r}, message 2, part 2)" in message
    assert f"LiteLLM leaves it out of {provider} requests" in message
    assert chat.error.attempts is None  # nothing was sent
    assert str(streamed.value) == message


async def test_routes_that_carry_every_part_get_them_all(
    recorder: ScriptedServer,
) -> None:
    recorder.requests.clear()
    parts = [ContentText("look"), *(part for part, _ in PARTS.values())]
    for identifier in (
        f"hosted_vllm/m,api_base={recorder.url}",
        f"gemini/m,api_base={recorder.url}/v1beta,api_key=k",
    ):
        await (
            jib.get_generator(identifier + ",max_retries=0")
            .chat([Message("user", parts)])
            .run(on_failed="include")
        )

    assert len(recorder.requests) == 2
    for request in recorder.requests:
        assert all(base64.b64encode(payload) in request.body for _, payload in PARTS.values())


@pytest.fixture
def ollama() -> Iterator[RunningOllama]:
    with run_ollama_server() as server:
        yield server


async def test_a_param_the_provider_does_not_take_is_refused_unless_dropping_is_asked_for(
    ollama: RunningOllama,
) -> None:
    chat_api = jib.get_generator(f"ollama_chat/qwen3:0.6b,api_base={ollama.url}")
    generate_api = jib.get_generator(f"ollama/qwen3:0.6b,api_base={ollama.url}")

    no_parallel = (
        await chat_api.chat("hi")
        .with_(tools=[TOOL], parallel_tool_calls=False)
        .run(on_failed="include")
    )
    no_tools = await generate_api.chat("hi").with_(tools=[TOOL]).run(on_failed="include")
    assert ollama.state.requests == []
    assert str(no_parallel.error) == (
        "[ollama_chat/qwen3:0.6b] cannot carry parallel_tool_calls: LiteLLM does not send it to "
        "this provider. Leave it out, or pass extra={'drop_params': True} to send the request "
        "without"
    )
    assert str(no_tools.error).startswith("[ollama/qwen3:0.6b] cannot carry tools: ")
    assert no_tools.error.attempts is None

    dropped = (
        await chat_api.chat("hi")
        .with_(tools=[TOOL], parallel_tool_calls=False, extra={"drop_params": True})
        .run()
    )
    assert not dropped.failed
    assert len(ollama.state.requests) == 1
    sent = ollama.state.requests[0]
    assert sent["tools"][0]["function"]["name"] == "lookup"
    assert "parallel_tool_calls" not in sent


async def test_a_text_completion_refuses_tools_before_sending(recorder: ScriptedServer) -> None:
    recorder.requests.clear()
    generator = jib.get_generator(f"openai/m,api_base={recorder.url},api_key=k")

    completion = (
        await generator.complete("the quick brown fox")
        .with_(tools=[TOOL], tool_choice="auto")
        .run(on_failed="include")
    )

    assert recorder.requests == []
    assert isinstance(completion.error, ProcessingError)
    assert str(completion.error) == (
        "[openai/m] a text completion cannot carry tools, tool_choice: it sends a prompt, not a "
        "chat; use .chat() for tools and audio"
    )


async def test_anthropic_receives_cache_marks_on_blocks_and_its_cache_counts_come_back(
    anthropic_server: RunningAnthropicServer,
) -> None:
    generator = jib.get_generator(
        f"anthropic/claude-sonnet-4-5,api_base={anthropic_server.url},api_key=k"
    )
    mark = {"type": "ephemeral"}
    messages = [
        Message("system", "You read long documents carefully.", cache_control=mark),
        Message("user", [ContentText("A long document about tides.", cache_control=mark)]),
    ]

    first = await generator.chat([*messages, Message("user", "Summarize it.")]).run()
    second = await generator.chat([*messages, Message("user", "Name its title.")]).run()

    body = anthropic_server.state.requests[0]
    assert body["system"] == [
        {"type": "text", "text": "You read long documents carefully.", "cache_control": mark}
    ]
    assert body["messages"][0]["content"][0] == {
        "type": "text",
        "text": "A long document about tides.",
        "cache_control": mark,
    }
    cached = len(
        [
            "You",
            "read",
            "long",
            "documents",
            "carefully.",
            "A",
            "long",
            "document",
            "about",
            "tides.",
        ]
    )
    assert first.usage is not None and second.usage is not None
    assert (first.usage.cache_write_tokens, first.usage.cached_input_tokens) == (cached, 0)
    assert (second.usage.cache_write_tokens, second.usage.cached_input_tokens) == (0, cached)
    assert second.usage.input_tokens == cached + 3  # the cached part counts as input too


async def test_a_streamed_answer_of_tool_calls_alone_is_read_from_the_stream(
    anthropic_server: RunningAnthropicServer,
) -> None:
    anthropic_server.state.script.add(Reply(tool_calls=(ToolUse("lookup", {"q": "tides"}),)))
    generator = jib.get_generator(
        f"anthropic/claude-sonnet-4-5,api_base={anthropic_server.url},api_key=k"
    )

    stream = generator.chat("Look up tides.").with_(tools=[TOOL]).stream()
    pieces = [piece async for piece in stream]

    assert pieces == []
    assert [(c.function.name, c.parsed_arguments()) for c in stream.chat.last.tool_calls] == [
        ("lookup", {"q": "tides"})
    ]
    assert stream.chat.stop_reason == "tool_calls"
    # Read from the stream: not asked again without streaming.
    assert [body.get("stream") for body in anthropic_server.state.requests] == [True]
