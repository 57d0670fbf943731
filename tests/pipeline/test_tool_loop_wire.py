"""Tool loops over the wire: `openai!` and the LiteLLM path against a server whose model calls
tools (tests/support/tool_server.py), plain and streamed.

Three rounds of two parallel calls each, then the answer: the chat holds every round, the server
saw every tool result go back to its call, and attempts add up over the rounds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

import jib
from jib import Chat, Message
from jib.errors import ToolDepthError, ToolError
from jib.generator import Generator
from jib.pipeline import Tool
from tests.support.scripted_server import ScriptedServer
from tests.support.tool_server import ROUNDS, calls_for, expected_answer, serve_tool_model

PROVIDERS = ["openai", "litellm"]


@pytest.fixture(scope="module")
def tool_model() -> Iterator[ScriptedServer]:
    with serve_tool_model() as server:
        yield server


def generator_for(provider: str, server: ScriptedServer) -> Generator:
    settings = f"api_base={server.url}/v1,api_key=sk-tools,max_retries=0"
    identifier = (
        f"openai!tool-model,{settings}" if provider == "openai" else f"openai/tool-model,{settings}"
    )
    return jib.get_generator(identifier)


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


async def multiply(a: int, b: int) -> int:
    """Multiply two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    await asyncio.sleep(0)
    return a * b


def divide(a: int, b: int) -> float:
    """Divide a by b."""
    return a / (b - b)  # always divides by zero


def requests_of(server: ScriptedServer, start: str) -> list[dict[str, Any]]:
    """The bodies the server received for the chat that started with `start`."""
    bodies = [request.json() for request in server.requests]
    return [body for body in bodies if body["messages"][0]["content"] == start]


def expected_rounds(start: int) -> list[tuple[str, Any]]:
    """Each generated message's role and, for tools, content, as the chat should hold them."""
    shape: list[tuple[str, Any]] = []
    a, b = start, 1
    for round in range(ROUNDS):
        shape.append(("assistant", [c["function"]["name"] for c in calls_for(round, a, b)]))
        a, b = a + b, a * b
        shape += [("tool", str(a)), ("tool", str(b))]
    shape.append(("assistant", []))
    return shape


def rounds_of(chat: Chat) -> list[tuple[str, Any]]:
    return [
        (m.role, [c.function.name for c in m.tool_calls] if m.role == "assistant" else m.content)
        for m in chat.generated
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_three_rounds_of_two_parallel_calls_end_in_the_answer(
    tool_model: ScriptedServer, provider: str, streamed: bool
) -> None:
    start = f"start {7 if streamed else 5}"
    tool_model.requests.clear()
    pipeline = generator_for(provider, tool_model).chat(start).using(add, multiply)

    if streamed:
        stream = pipeline.stream()
        deltas = [delta async for delta in stream]
        chat = stream.chat
        assert "".join(deltas) == chat.content  # only the answer had text
        assert len(deltas) > 1
    else:
        chat = await pipeline.run()

    number = int(start.split()[1])
    assert chat.content == expected_answer(number)
    assert rounds_of(chat) == expected_rounds(number)
    assert chat.stop_reason == "stop"
    assert chat.messages == [Message("user", start)]
    # Every tool result answers its own call.
    for message, call_message in zip(chat.generated[1::3], chat.generated[0::3], strict=False):
        assert message.tool_call_id == call_message.tool_calls[0].id
    # The server saw each round's results go back, and the tools offered every time.
    bodies = requests_of(tool_model, start)
    assert len(bodies) == ROUNDS + 1
    for round, body in enumerate(bodies):
        assert [tool["function"]["name"] for tool in body["tools"]] == ["add", "multiply"]
        assert body["tools"][0]["function"]["description"] == "Add two numbers."
        assert body["tools"][0]["function"]["parameters"]["properties"]["a"] == {
            "type": "integer",
            "description": "the first number.",
        }
        results = [m for m in body["messages"] if m["role"] == "tool"]
        assert len(results) == 2 * round
    last = bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] + ["assistant", "tool", "tool"] * ROUNDS
    second_call = last[1]["tool_calls"][1]["function"]
    assert (second_call["name"], json.loads(second_call["arguments"])) == (
        "multiply",
        {"a": number, "b": 1},
    )
    # Usage and attempts add up over the four rounds.
    assert chat.attempts == ROUNDS + 1
    assert chat.usage is not None and chat.usage.total_tokens == 14 * (ROUNDS + 1)
    assert chat.latency_ms is not None and chat.latency_ms > 0
    assert "[tool]: " in chat.conversation and "-> multiply(" in chat.conversation


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_that_raises_is_an_error_result_the_model_sees(
    tool_model: ScriptedServer, provider: str
) -> None:
    tool_model.requests.clear()
    chat = await generator_for(provider, tool_model).chat("broken 3").using(add, divide).run()

    assert chat.content == "A tool failed: ['4', 'Error: ZeroDivisionError: division by zero']"
    seen = requests_of(tool_model, "broken 3")[-1]["messages"]
    assert seen[-1] == {
        "role": "tool",
        "content": "Error: ZeroDivisionError: division by zero",
        "tool_call_id": "call_0_1",
    }


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_that_raises_fails_the_chat_when_not_caught(
    tool_model: ScriptedServer, provider: str
) -> None:
    pipeline = generator_for(provider, tool_model).chat("broken 3").using(add, divide, catch=False)

    chat = await pipeline.run(on_failed="include")

    assert isinstance(chat.error, ToolError)
    assert isinstance(chat.error.__cause__, ZeroDivisionError)
    assert chat.error.tool == "divide" and chat.error.call_id == "call_0_1"
    assert [m.role for m in chat.generated] == ["assistant"]  # the calls, unanswered
    with pytest.raises(ToolError, match=r"tool 'divide' .* raised ZeroDivisionError"):
        await pipeline.run()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_max_depth_reached_fails_the_chat_with_every_round_kept(
    tool_model: ScriptedServer, provider: str, streamed: bool
) -> None:
    tool_model.requests.clear()
    pipeline = (
        generator_for(provider, tool_model).chat("always 1").using(add, multiply, max_depth=2)
    )

    if streamed:
        stream = pipeline.stream(on_failed="include")
        assert [delta async for delta in stream] == []
        chat = stream.chat
    else:
        chat = await pipeline.run(on_failed="include")

    assert isinstance(chat.error, ToolDepthError)
    assert chat.error.max_depth == 2
    assert "after 2 rounds" in str(chat.error) and "max_depth=2" in str(chat.error)
    assert [m.role for m in chat.generated] == ["assistant", "tool", "tool"] * 2 + ["assistant"]
    assert chat.generated[-1].tool_calls  # the calls it asked for last, not run
    assert len(requests_of(tool_model, "always 1")) == 3
    assert chat.attempts == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_definitions_are_offered_and_their_calls_recorded_not_run(
    tool_model: ScriptedServer, provider: str
) -> None:
    definitions = [Tool.from_function(add).definition, Tool.from_function(multiply).definition]
    tool_model.requests.clear()

    chat = await generator_for(provider, tool_model).chat("start 2").using(*definitions).run()

    assert chat.stop_reason == "tool_calls"
    assert [c.function.name for c in chat.last.tool_calls] == ["add", "multiply"]
    assert chat.last.tool_calls[0].parsed_arguments() == {"a": 2, "b": 1}
    assert len(requests_of(tool_model, "start 2")) == 1
