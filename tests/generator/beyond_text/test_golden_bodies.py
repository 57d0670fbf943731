"""Golden request bodies: one chat with an image, an audio clip, a PDF, an earlier tool call and
its result, two tools with `tool_choice`, and `response_format`, sent four ways — `openai!`, and
LiteLLM to OpenAI's, Anthropic's and Gemini's APIs — each server on 127.0.0.1 receiving its own
format, checked field by field; and the answers' tool calls coming back equal on all four, plain
and streamed.

Anthropic's API takes no audio, so its chat leaves the clip out (sending it is refused before
anything goes out: tests/generator/beyond_text/test_litellm_carry.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

import jib
from jib.chat import Chat
from tests.generator.beyond_text.golden import (
    ANSWER_SCHEMA,
    EXPECTED_CALLS,
    PDF_B64,
    PNG_B64,
    QUESTION,
    REPLY,
    SYSTEM,
    TOOL_RESULT,
    TOOLS,
    WAV_B64,
    WEATHER,
    golden_messages,
    golden_params,
    openai_golden_body,
)
from tests.support.anthropic_server import RunningAnthropicServer
from tests.support.gemini_server import RunningGeminiServer
from tests.support.openai_chat_server import RunningOpenAIChatServer


@dataclass
class Route:
    """One way to the golden chat's server: the generator, and what the server recorded."""

    name: str
    generator: jib.Generator
    state: Any
    audio: bool = True


@pytest.fixture(params=["openai!", "litellm-openai", "litellm-anthropic", "litellm-gemini"])
def route(
    request: pytest.FixtureRequest,
    openai_chat_server: RunningOpenAIChatServer,
    anthropic_server: RunningAnthropicServer,
    gemini_server: RunningGeminiServer,
) -> Route:
    name = request.param
    if name == "openai!":
        identifier = f"openai!gpt-4o-mini,api_base={openai_chat_server.url}"
        state: Any = openai_chat_server.state
    elif name == "litellm-openai":
        identifier = f"openai/gpt-4o-mini,api_base={openai_chat_server.url},api_key=sk-test"
        state = openai_chat_server.state
    elif name == "litellm-anthropic":
        identifier = f"anthropic/claude-sonnet-4-5,api_base={anthropic_server.url},api_key=sk-ant"
        state = anthropic_server.state
    else:
        identifier = f"gemini/gemini-2.5-flash,api_base={gemini_server.url}/v1beta,api_key=gm-key"
        state = gemini_server.state
    generator = jib.get_generator(identifier + ",max_retries=0")
    return Route(name, generator, state, audio=name != "litellm-anthropic")


async def _send(route: Route, *, stream: bool) -> Chat:
    route.state.script.add(REPLY)
    pipeline = route.generator.chat(golden_messages(audio=route.audio), golden_params())
    if not stream:
        return await pipeline.run()
    streamed = pipeline.stream()
    pieces = [piece async for piece in streamed]
    assert "".join(pieces) == REPLY.text
    return streamed.chat


def _calls(chat: Chat) -> list[tuple[str, Any]]:
    return [(call.function.name, call.parsed_arguments()) for call in chat.last.tool_calls]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_the_answers_tool_calls_come_back_equal_on_all_four_routes(
    route: Route, stream: bool
) -> None:
    chat = await _send(route, stream=stream)

    assert not chat.failed, chat.error
    assert _calls(chat) == EXPECTED_CALLS
    assert chat.content == REPLY.text
    assert chat.stop_reason == "tool_calls"
    assert all(call.id for call in chat.last.tool_calls)
    assert len(route.state.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("bang", [True, False], ids=["openai!", "litellm-openai"])
async def test_openai_servers_receive_every_part_tool_and_format_in_openai_shape(
    openai_chat_server: RunningOpenAIChatServer, bang: bool, stream: bool
) -> None:
    identifier = (
        f"openai!gpt-4o-mini,api_base={openai_chat_server.url}"
        if bang
        else f"openai/gpt-4o-mini,api_base={openai_chat_server.url},api_key=sk-test"
    )
    route = Route("openai", jib.get_generator(identifier), openai_chat_server.state)
    await _send(route, stream=stream)

    body = openai_chat_server.state.requests[0]
    expected = openai_golden_body("gpt-4o-mini")
    if not bang:
        del expected["messages"][2]["content"]  # LiteLLM leaves a null content out
    if stream:
        expected.update(stream=True, stream_options={"include_usage": True})
    assert body == expected


def _anthropic_golden_body() -> dict[str, Any]:
    tools = [
        {
            "name": tool["function"]["name"],
            "input_schema": WEATHER,
            "type": "custom",
            "description": tool["function"]["description"],
        }
        for tool in TOOLS
    ]
    return {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": SYSTEM}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": PDF_B64,
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": TOOL_RESULT}
                ],
            },
        ],
        "max_tokens": 256,
        "tools": tools,
        "tool_choice": {"type": "tool", "name": "get_time", "disable_parallel_tool_use": False},
        "output_format": {"type": "json_schema", "schema": ANSWER_SCHEMA},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_anthropic_receives_image_and_document_blocks_tool_use_and_results_and_schema(
    anthropic_server: RunningAnthropicServer, stream: bool
) -> None:
    generator = jib.get_generator(
        f"anthropic/claude-sonnet-4-5,api_base={anthropic_server.url},api_key=sk-ant"
    )
    await _send(Route("anthropic", generator, anthropic_server.state, audio=False), stream=stream)

    body = anthropic_server.state.requests[0]
    headers = anthropic_server.state.headers[0]
    expected = _anthropic_golden_body()
    if stream:
        expected["stream"] = True
    assert body == expected
    assert anthropic_server.state.paths == ["/v1/messages"]
    assert headers["x-api-key"] == "sk-ant"
    assert headers["anthropic-version"] == "2023-06-01"
    # The structured-output beta that `output_format` needs.
    assert "structured-outputs" in headers["anthropic-beta"]


def _gemini_golden_body() -> dict[str, Any]:
    declarations = [
        {
            "name": tool["function"]["name"],
            "description": tool["function"]["description"],
            "parameters": WEATHER,
        }
        for tool in TOOLS
    ]
    return {
        "system_instruction": {"parts": [{"text": SYSTEM}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": QUESTION},
                    {"inline_data": {"data": PNG_B64, "mime_type": "image/png"}},
                    {"inline_data": {"data": WAV_B64, "mime_type": "audio/wav"}},
                    {"inline_data": {"data": PDF_B64, "mime_type": "application/pdf"}},
                ],
            },
            {
                "role": "model",
                "parts": [{"function_call": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "function_response": {
                            "name": "get_weather",
                            "response": {"content": TOOL_RESULT},
                        }
                    }
                ],
            },
        ],
        "tools": [{"function_declarations": declarations}],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowed_function_names": ["get_time"]}
        },
        "generationConfig": {
            "max_output_tokens": 256,
            "response_mime_type": "application/json",
            "response_json_schema": ANSWER_SCHEMA,
        },
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_gemini_receives_inline_data_function_declarations_calls_and_responses(
    gemini_server: RunningGeminiServer, stream: bool
) -> None:
    generator = jib.get_generator(
        f"gemini/gemini-2.5-flash,api_base={gemini_server.url}/v1beta,api_key=gm-key"
    )
    await _send(Route("gemini", generator, gemini_server.state), stream=stream)

    # Gemini reads either spelling of its fields; LiteLLM writes the proto names (snake_case)
    # for most, camelCase for the tool config.
    assert gemini_server.state.requests[0] == _gemini_golden_body()
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert gemini_server.state.paths == [f"/v1beta/models/gemini-2.5-flash:{method}"]
    assert gemini_server.state.headers[0]["x-goog-api-key"] == "gm-key"


async def test_the_golden_chat_is_left_unchanged_by_sending_it(
    openai_chat_server: RunningOpenAIChatServer, anthropic_server: RunningAnthropicServer
) -> None:
    messages = golden_messages(audio=False)
    before = copy.deepcopy([message.to_dict() for message in messages])
    for identifier in (
        f"openai!m,api_base={openai_chat_server.url}",
        f"anthropic/claude-sonnet-4-5,api_base={anthropic_server.url},api_key=k",
    ):
        await jib.get_generator(identifier).chat(messages, golden_params()).run()

    assert [message.to_dict() for message in messages] == before
