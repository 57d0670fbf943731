"""`ChatPipeline.cache("latest")`: prompt-cache marks on the latest two non-assistant messages
of each request; `cache(None)` stops marking. The marks reach the wire; the chat keeps its
messages as given."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import jib
from jib import ContentImageUrl, ContentText, FunctionCall, Message, ToolCall
from jib.testing import ScriptedGenerator
from tests.support.scripted_server import ScriptedServer
from tests.support.tool_server import serve_tool_model

EPHEMERAL = {"type": "ephemeral"}


def marks(conversation: list[Message]) -> list[Any]:
    return [message.cache_control for message in conversation]


def conversation() -> list[Message]:
    return [
        Message("system", "Be brief."),
        Message("user", "first"),
        Message("assistant", "one"),
        Message("user", "second"),
    ]


async def test_latest_marks_the_latest_two_non_assistant_messages_of_the_request() -> None:
    # The conversation holds one answer already: the script's second entry answers it.
    model = ScriptedGenerator(model="s", script=["one", "ok"])
    chat = await model.chat(conversation()).cache("latest").run()

    sent, _ = model.received[0]
    assert marks(sent) == [None, EPHEMERAL, None, EPHEMERAL]
    assert [m.content for m in sent] == ["Be brief.", "first", "one", "second"]
    # The chat keeps its messages as given: the marks are the request's.
    assert marks(chat.messages) == [None, None, None, None]


async def test_latest_clears_marks_already_on_messages_and_parts() -> None:
    image = ContentImageUrl.from_url("https://example.com/a.png")
    marked_part = ContentText("look", cache_control=EPHEMERAL)
    messages = [
        Message("system", "Be brief.", cache_control=EPHEMERAL),
        Message("user", [marked_part, image]),
        Message("user", "last"),
    ]
    model = ScriptedGenerator(model="s", script=["ok"])
    await model.chat(messages).cache().run()

    sent, _ = model.received[0]
    assert marks(sent) == [None, EPHEMERAL, EPHEMERAL]
    assert sent[1].content_parts == [ContentText("look"), image]
    assert messages[0].cache_control == EPHEMERAL  # the caller's messages are untouched


async def test_cache_none_stops_marking_and_leaves_your_own_marks() -> None:
    own = Message("system", "Be brief.", cache_control=EPHEMERAL)
    model = ScriptedGenerator(model="s", script=["ok"])
    pipeline = model.chat([own, "hi", "there"]).cache("latest")

    await pipeline.cache(None).run()
    await pipeline.cache(False).run()

    for sent, _ in model.received:
        assert marks(sent) == [EPHEMERAL, None, None]


def test_cache_returns_a_new_pipeline_and_refuses_other_modes() -> None:
    base = ScriptedGenerator(model="s").chat("x")
    assert base.cache("latest") is not base
    with pytest.raises(ValueError, match="cache\\(\\) takes 'latest' or None, not 'all'"):
        base.cache("all")  # type: ignore[arg-type]


async def test_each_round_of_a_tool_loop_is_marked_afresh() -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    call = ToolCall("c1", FunctionCall("add", '{"a": 1, "b": 2}'))
    model = ScriptedGenerator(model="s", script=[[call], "3"])
    await model.chat(["system prompt", "question"]).using(add).cache().run()

    first, second = (sent for sent, _ in model.received)
    assert marks(first) == [EPHEMERAL, EPHEMERAL]
    assert [m.role for m in second] == ["user", "user", "assistant", "tool"]
    assert marks(second) == [None, EPHEMERAL, None, EPHEMERAL]


@pytest.fixture(scope="module")
def tool_model() -> Iterator[ScriptedServer]:
    with serve_tool_model() as server:
        yield server


@pytest.mark.parametrize("prefix", ["openai!tool-model", "openai/tool-model"])
async def test_the_marks_reach_the_request_body(tool_model: ScriptedServer, prefix: str) -> None:
    tool_model.requests.clear()
    generator = jib.get_generator(f"{prefix},api_base={tool_model.url}/v1,api_key=sk-c")
    system = Message("system", "You add numbers.")

    await generator.chat([system, "start 1"]).cache("latest").run()

    (body,) = (request.json() for request in tool_model.requests)
    assert body["messages"] == [
        {"role": "system", "content": "You add numbers.", "cache_control": EPHEMERAL},
        {"role": "user", "content": "start 1", "cache_control": EPHEMERAL},
    ]
