"""`ChatPipeline.using`: the tool loop, offline (jib.testing's scripted and callback generators).

The wire (openai!, LiteLLM) is proven in test_tool_loop_wire.py and under faults in
test_tool_loop_faults.py; here, the loop's rules one by one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from jib import FunctionCall, GenerateParams, Message, ToolCall, ToolDefinition
from jib.content import ContentImageUrl
from jib.errors import ServerError, ToolDepthError, ToolError
from jib.pipeline import Tool
from jib.testing import CallbackGenerator, EchoGenerator, ScriptedGenerator


def call(name: str, arguments: str, id: str = "c1") -> ToolCall:
    return ToolCall(id, FunctionCall(name, arguments))


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Point(BaseModel):
    x: int
    y: int


class Where(BaseModel):
    city: str


def scripted(*entries: Any) -> ScriptedGenerator:
    return ScriptedGenerator(model="s", script=list(entries))


def tool_results(generator: ScriptedGenerator, turn: int) -> list[Message]:
    """The tool messages the model was sent at its `turn`-th answer (from 0)."""
    conversation = generator.received[turn][0]
    return [m for m in conversation if m.role == "tool"]


# -- the loop -----------------------------------------------------------------------------------


async def test_calls_run_and_their_results_go_back_until_an_answer() -> None:
    model = scripted(
        [call("add", '{"a": 1, "b": 2}', "c1"), call("add", '{"a": 3, "b": 4}', "c2")],
        [call("add", '{"a": 3, "b": 7}', "c3")],
        "10",
    )

    chat = await model.chat("sum 1 2 3 4").using(add).run()

    assert [(m.role, m.content, m.tool_call_id) for m in chat.generated] == [
        ("assistant", "", None),
        ("tool", "3", "c1"),
        ("tool", "7", "c2"),
        ("assistant", "", None),
        ("tool", "10", "c3"),
        ("assistant", "10", None),
    ]
    assert chat.messages == [Message("user", "sum 1 2 3 4")]
    assert chat.content == "10" and chat.stop_reason == "stop"
    assert model.batch_sizes == [1, 1, 1]
    # What the model was sent each round: everything so far, with the tools offered.
    assert [len(conversation) for conversation, _ in model.received] == [1, 4, 6]
    assert all(p.tools == [Tool.from_function(add).definition] for _, p in model.received)
    # Usage sums the rounds.
    assert chat.usage is not None
    assert chat.usage.output_tokens == 1  # only the answer had words
    assert chat.usage.input_tokens == sum(
        len(" ".join(m.content for m in conversation).split()) for conversation, _ in model.received
    )


async def test_the_conversation_reads_every_round() -> None:
    model = scripted([call("add", '{"a": 1, "b": 2}')], "It is 3.")
    chat = await model.chat("1 + 2?").using(add).run()
    assert chat.conversation == (
        '[user]: 1 + 2?\n\n[assistant]: \n  -> add({"a": 1, "b": 2})\n\n[tool]: 3\n\n'
        "[assistant]: It is 3."
    )


async def test_parallel_calls_run_concurrently() -> None:
    # Each tool waits for the other to have started: run one after the other, they would
    # wait forever (the waits are bounded only so a broken loop fails instead of hanging).
    started = {"first": asyncio.Event(), "second": asyncio.Event()}
    threads = threading.Barrier(2, timeout=60)

    async def first() -> str:
        """Wait for the second."""
        started["first"].set()
        await asyncio.wait_for(started["second"].wait(), 60)
        return "first done"

    async def second() -> str:
        """Wait for the first."""
        started["second"].set()
        await asyncio.wait_for(started["first"].wait(), 60)
        return "second done"

    def third() -> str:
        """A sync tool: runs in a worker thread, beside the fourth."""
        threads.wait()
        return "third done"

    def fourth() -> str:
        """Another sync tool."""
        threads.wait()
        return "fourth done"

    model = scripted(
        [call(name, "{}", name) for name in ("first", "second", "third", "fourth")], "done"
    )
    chat = await model.chat("go").using(first, second, third, fourth).run()

    assert [m.content for m in chat.generated[1:5]] == [
        "first done",
        "second done",
        "third done",
        "fourth done",
    ]


async def test_a_sync_tool_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where() -> str:
        """Say where it ran."""
        seen.append(threading.get_ident())
        return "ok"

    await scripted([call("where", "{}")], "done").chat("x").using(where).run()
    assert seen and seen[0] != loop_thread


async def test_results_are_text_parts_or_json() -> None:
    image = ContentImageUrl.from_bytes(b"\x89PNG", "image/png")

    def text() -> str:
        """Text."""
        return "plain"

    def picture() -> ContentImageUrl:
        """A part."""
        return image

    def point() -> Point:
        """A model."""
        return Point(x=1, y=2)

    def data() -> dict[str, Any]:
        """JSON."""
        return {"a": [1, None], "b": "é"}

    def nothing() -> None:
        """Nothing."""

    names = ("text", "picture", "point", "data", "nothing")
    model = scripted([call(name, "{}", name) for name in names], "done")
    chat = await model.chat("x").using(text, picture, point, data, nothing).run()

    results = chat.generated[1:6]
    assert [m.content for m in results] == [
        "plain",
        "",
        '{"x":1,"y":2}',
        '{"a":[1,null],"b":"é"}',
        "null",
    ]
    assert results[1].content_parts == [image]


async def test_arguments_are_validated_and_converted_before_the_tool_runs() -> None:
    received: list[Any] = []

    def weather(where: Where, days: int = 1) -> str:
        """The weather."""
        received.append((where, days))
        return "sunny"

    model = scripted([call("weather", '{"where": {"city": "Paris"}, "days": "3"}')], "ok")
    await model.chat("x").using(weather).run()
    assert received == [(Where(city="Paris"), 3)]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"a": 1}', "Error: invalid arguments for add: b: Missing required argument"),
        (
            '{"a": "one", "b": 2}',
            "Error: invalid arguments for add: a: Input should be a valid integer, unable to "
            "parse string as an integer",
        ),
        (
            '{"a": 1, "b": 2, "c": 3}',
            "Error: invalid arguments for add: c: Unexpected keyword argument",
        ),
        ('{"a": 1, "b"', "Error: invalid arguments for add: the arguments of 'add' are not JSON"),
        (
            "[1, 2]",
            "Error: invalid arguments for add: the arguments must be a JSON object, not list",
        ),
    ],
)
async def test_invalid_arguments_become_an_error_result_the_model_sees(
    arguments: str, problem: str
) -> None:
    ran: list[int] = []

    def add(a: int, b: int) -> int:
        """Add."""
        ran.append(a)
        return a + b

    model = scripted([call("add", arguments)], "sorry")
    chat = await model.chat("x").using(add).run()

    assert ran == []
    assert chat.generated[1].content.startswith(problem), chat.generated[1].content
    assert tool_results(model, 1) == [chat.generated[1]]
    assert chat.content == "sorry" and not chat.failed


async def test_a_call_to_a_tool_that_does_not_exist_is_an_error_result() -> None:
    model = scripted([call("subtract", "{}")], "ok")
    chat = await model.chat("x").using(add).run()
    assert chat.generated[1].content == "Error: there is no tool named 'subtract'; tools: add"


# -- a tool that raises ---------------------------------------------------------------------------


def fragile(n: int) -> int:
    """Fail for negative numbers."""
    if n < 0:
        raise ValueError(f"{n} is negative")
    if n == 0:
        raise KeyError("zero")
    return n


async def test_a_tool_that_raises_becomes_an_error_result_by_default() -> None:
    model = scripted([call("fragile", '{"n": -1}')], "I see")
    chat = await model.chat("x").using(fragile).run()
    assert chat.generated[1].content == "Error: ValueError: -1 is negative"
    assert chat.content == "I see" and not chat.failed


async def test_catch_false_fails_the_chat_with_a_tool_error() -> None:
    model = scripted([call("fragile", '{"n": -1}', "c9")], "never")
    pipeline = model.chat("x").using(fragile, catch=False)

    with pytest.raises(ToolError) as raised:
        await pipeline.run()
    error = raised.value
    assert str(error) == "tool 'fragile' (call 'c9') raised ValueError: -1 is negative"
    assert isinstance(error.__cause__, ValueError)
    assert (error.tool, error.call_id) == ("fragile", "c9")

    chat = await pipeline.run(on_failed="include")
    assert chat.failed and isinstance(chat.error, ToolError)
    assert [m.role for m in chat.generated] == ["assistant"]  # the calls stay, unanswered
    assert chat.stop_reason == "tool_calls"


async def test_catch_with_types_shows_those_and_fails_on_others() -> None:
    pipeline = scripted([call("fragile", '{"n": -1}')], "ok").chat("x")
    chat = await pipeline.using(fragile, catch=[ValueError]).run()
    assert chat.generated[1].content == "Error: ValueError: -1 is negative"

    pipeline = scripted([call("fragile", '{"n": 0}')], "ok").chat("x")
    chat = await pipeline.using(fragile, catch=[ValueError]).run(on_failed="include")
    assert isinstance(chat.error, ToolError)
    assert isinstance(chat.error.__cause__, KeyError)


async def test_a_tool_error_in_one_parallel_call_cancels_the_others() -> None:
    cancelled = asyncio.Event()

    async def slow() -> str:
        """Wait forever."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    model = scripted([call("slow", "{}", "a"), call("fragile", '{"n": -1}', "b")], "never")
    chat = await model.chat("x").using(slow, fragile, catch=False).run(on_failed="include")
    assert isinstance(chat.error, ToolError)
    assert cancelled.is_set()


# -- depth, definitions ---------------------------------------------------------------------------


async def test_max_depth_fails_the_chat_and_keeps_every_round() -> None:
    model = scripted(*[[call("add", '{"a": 1, "b": 1}', f"c{i}")] for i in range(5)])
    pipeline = model.chat("loop").using(add, max_depth=3)

    chat = await pipeline.run(on_failed="include")

    assert isinstance(chat.error, ToolDepthError)
    assert str(chat.error) == (
        "the model still asked for tool calls (add) after 3 rounds of them (max_depth=3); "
        "raise max_depth or change the prompt"
    )
    assert [m.role for m in chat.generated] == ["assistant", "tool"] * 3 + ["assistant"]
    assert len(model.received) == 4
    with pytest.raises(ToolDepthError):
        await pipeline.run()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_depth_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_depth must be an int >= 1"):
        EchoGenerator(model="e").chat("x").using(add, max_depth=bad)


async def test_calls_to_definitions_are_recorded_not_run() -> None:
    definition = ToolDefinition.model_validate(
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    )
    ran: list[int] = []

    def counted(a: int, b: int) -> int:
        """Count."""
        ran.append(a)
        return a

    # A definition, the same as a dict, or a call mixing a run tool with an offered one.
    for tools in ([definition], [definition.to_dict()], [counted, definition]):
        model = scripted([call("counted", '{"a": 1, "b": 2}', "x"), call("lookup", "{}", "y")])
        chat = await model.chat("x").using(*tools).run()
        assert chat.stop_reason == "tool_calls"
        assert [c.function.name for c in chat.last.tool_calls] == ["counted", "lookup"]
        assert len(chat.generated) == 1
    assert ran == []


async def test_tools_in_params_without_using_are_recorded_not_run() -> None:
    definition = Tool.from_function(add).definition
    model = scripted([call("add", '{"a": 1, "b": 2}')])
    chat = await model.chat("x").with_(tools=[definition]).run()
    assert chat.stop_reason == "tool_calls" and len(chat.generated) == 1
    assert model.received[0][1].tools == [definition]


# -- the pipeline around the loop ---------------------------------------------------------------


def test_using_returns_a_new_pipeline_and_sets_params_tools() -> None:
    base = EchoGenerator(model="e").chat("x")
    with_add = base.using(add)
    with_more = with_add.using(Tool.from_function(add, name="plus"), choice="auto")

    assert base.params.tools is None and with_add is not base
    assert [t.function.name for t in with_add.params.tools or ()] == ["add"]
    assert [t.function.name for t in with_more.params.tools or ()] == ["add", "plus"]
    assert with_more.params.tool_choice == "auto" and with_add.params.tool_choice is None


def test_a_later_tool_of_the_same_name_replaces_the_earlier() -> None:
    def add(a: float, b: float) -> float:
        """Add floats."""
        return a + b

    pipeline = EchoGenerator(model="e").chat("x").using(globals()["add"]).using(add)
    (tool,) = pipeline.params.tools or ()
    assert tool.function.description == "Add floats."


async def test_run_batch_runs_each_chats_rounds_independently() -> None:
    def answer(messages: list[Message], params: GenerateParams) -> Message | str:
        """Chat `n` calls `add` n times, then answers; `fail` fails its second round."""
        start = messages[0].content
        rounds = sum(1 for m in messages if m.role == "assistant")
        if start == "fail" and rounds == 1:
            raise ServerError("broken", status_code=500)
        wanted = 1 if start == "fail" else int(start)
        if rounds < wanted:
            return Message(
                "assistant",
                "",
                tool_calls=[call("add", f'{{"a": {rounds}, "b": 1}}', f"c{rounds}")],
            )
        return f"done after {rounds}"

    model = CallbackGenerator(model="cb", callback=answer, max_retries=0)
    chats = await model.chat().using(add).run_batch(["0", "2", "fail", "3"], on_failed="include")

    assert [chat.content for chat in chats if not chat.failed] == [
        "done after 0",
        "done after 2",
        "done after 3",
    ]
    failed = chats[2]
    assert isinstance(failed.error, ServerError)
    assert [m.role for m in failed.generated] == ["assistant", "tool"]  # the round before
    assert failed.attempts == 2  # one request per round, the failed one included
    # One batch per round, of the chats still going.
    assert model.batch_sizes == [4, 3, 2, 1]
    assert [chat.attempts for chat in chats] == [1, 3, 2, 4]


async def test_callbacks_and_watchers_see_the_whole_exchange() -> None:
    seen: list[int] = []
    model = scripted([call("add", '{"a": 1, "b": 2}')], "3")
    chat = await (
        model.chat("x")
        .using(add)
        .then(lambda chat: seen.append(len(chat.generated)))
        .watch(lambda chats: seen.append(len(chats[0].generated)))
        .run()
    )
    assert seen == [3, 3] and chat.content == "3"


async def test_stream_with_tools_yields_the_answers_text_and_ends_with_the_rounds() -> None:
    model = scripted([call("add", '{"a": 1, "b": 2}')], "The sum is 3.")
    stream = model.chat("x").using(add).stream()

    deltas = [delta async for delta in stream]

    assert deltas == ["The", " sum", " is", " 3."]
    assert [m.role for m in stream.chat.generated] == ["assistant", "tool", "assistant"]
    assert stream.chat.generated[0].tool_calls == (call("add", '{"a": 1, "b": 2}'),)
    assert stream.chat.generated[1].content == "3"


async def test_a_plain_chat_is_unchanged_by_the_loop_machinery() -> None:
    chat = await EchoGenerator(model="e").chat("hello").run()
    assert chat.generated == [Message("assistant", "hello")]
    assert chat.output is None and chat.extra == {}


async def test_cost_adds_up_over_the_rounds() -> None:
    from jib.cost import Prices

    model = scripted([call("add", '{"a": 1, "b": 2}')], "it is three")
    chat = await model.chat("one plus two").using(add).run()

    prices = Prices.parse(["scripted!s=1000000,2000000"])  # $1 an input token, $2 an output one
    rounds = [model.answer_for(conversation).usage for conversation, _ in model.received]
    assert chat.usage == rounds[0] + rounds[1]  # type: ignore[operator]
    assert prices.cost(model, chat.usage) == sum(prices.cost(model, usage) for usage in rounds)
    # Input: 3 words, then those and the tool result "3"; output: the answer's 3 words.
    assert prices.cost(model, chat.usage) == (3 + 4) * 1 + 3 * 2
