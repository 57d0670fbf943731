"""`ChatPipeline.structured(Model)`: JSON asked for through `response_format`, validated into
`chat.output`; an invalid answer is asked again with what was wrong, up to `max_corrections`,
then the chat fails with `StructuredOutputError`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import jib
from jib import FunctionCall, GenerateParams, Message, ToolCall
from jib.errors import StructuredOutputError
from jib.params import response_format_for
from jib.testing import ScriptedGenerator
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)


class City(BaseModel):
    name: str
    population: int


PARIS = '{"name": "Paris", "population": 2102650}'


def scripted(*entries: Any) -> ScriptedGenerator:
    return ScriptedGenerator(model="s", script=list(entries))


async def test_a_valid_answer_is_validated_into_output() -> None:
    model = scripted(PARIS)
    chat = await model.chat("Describe Paris").structured(City).run()

    assert chat.output == City(name="Paris", population=2102650)
    assert chat.content == PARIS and len(chat.generated) == 1
    # The request asked for the model's JSON schema.
    (_, params), *_ = model.received
    assert params.response_format == response_format_for(City)
    assert chat.params is not None and chat.params.response_format == response_format_for(City)


async def test_an_answer_in_a_code_fence_is_read_without_it() -> None:
    chat = await scripted(f"```json\n{PARIS}\n```").chat("x").structured(City).run()
    assert chat.output == City(name="Paris", population=2102650)


async def test_an_invalid_answer_is_asked_again_with_what_was_wrong() -> None:
    model = scripted('{"name": "Paris"}', PARIS)
    chat = await model.chat("Describe Paris").structured(City).run()

    assert chat.output == City(name="Paris", population=2102650)
    assert [m.role for m in chat.generated] == ["assistant", "user", "assistant"]
    correction = chat.generated[1]
    assert correction.content == (
        "Your answer is not valid JSON for City:\n- population: Field required\n"
        "Answer again with only the JSON, corrected."
    )
    # The model saw its own answer and the correction.
    assert model.received[1][0][-2:] == [Message("assistant", '{"name": "Paris"}'), correction]
    assert chat.usage is not None and chat.usage.output_tokens == 2 + 4


async def test_answers_invalid_to_the_bound_fail_with_what_came_back() -> None:
    model = scripted("Paris is nice.", '{"name": 1}', '{"name": "Paris", "population": "many"}')
    pipeline = model.chat("Describe Paris").structured(City, max_corrections=2)

    chat = await pipeline.run(on_failed="include")

    error = chat.error
    assert isinstance(error, StructuredOutputError)
    assert str(error) == (
        "no answer validated as City (3 answers, max_corrections=2); the last: "
        '\'{"name": "Paris", "population": "many"}\': population: Input should be a valid '
        "integer, unable to parse string as an integer"
    )
    assert error.schema == "City"
    assert error.problems == (
        "population: Input should be a valid integer, unable to parse string as an integer",
    )
    assert chat.output is None
    assert [m.role for m in chat.generated] == ["assistant", "user"] * 2 + ["assistant"]
    assert "Invalid JSON" in chat.generated[1].content  # what the first answer was told
    with pytest.raises(StructuredOutputError):
        await pipeline.run()


async def test_max_corrections_zero_fails_on_the_first_invalid_answer() -> None:
    model = scripted("nope", PARIS)
    chat = await model.chat("x").structured(City, max_corrections=0).run(on_failed="include")
    assert isinstance(chat.error, StructuredOutputError)
    assert "(1 answer, max_corrections=0)" in str(chat.error)
    assert len(model.received) == 1


async def test_the_answer_an_error_shows_is_cut_short_and_redacted() -> None:
    key = "sk-structured-0123456789abcdef"
    model = ScriptedGenerator(model="s", api_key=key, script=[f"my key is {key} " + "x" * 1000])
    chat = await model.chat("x").structured(City, max_corrections=0).run(on_failed="include")

    error = chat.error
    assert isinstance(error, StructuredOutputError)
    assert key not in str(error) and key not in error.answer
    assert error.answer.startswith("my key is *** xxx") and error.answer.endswith("...")
    assert len(error.answer) == 300
    assert key in chat.generated[0].content  # the chat keeps what came back, whole


async def test_a_refusal_is_an_invalid_answer_that_says_so() -> None:
    def refuse(messages: list[Message], params: GenerateParams) -> jib.GeneratedMessage:
        return jib.GeneratedMessage(Message("assistant", ""), "stop", refusal="I cannot help.")

    model = jib.testing.CallbackGenerator(model="cb", callback=refuse)
    chat = await model.chat("x").structured(City, max_corrections=0).run(on_failed="include")
    assert isinstance(chat.error, StructuredOutputError)
    assert chat.error.problems == ("the model refused: I cannot help.",)
    assert chat.extra["refusal"] == "I cannot help."


async def test_structured_output_after_a_tool_loop_validates_the_final_answer() -> None:
    def population(city: str) -> int:
        """Look up a city's population."""
        return 2102650

    model = scripted(
        [ToolCall("c1", FunctionCall("population", '{"city": "Paris"}'))],
        '{"name": "Paris"}',
        PARIS,
    )
    chat = await model.chat("x").using(population).structured(City).run()

    assert chat.output == City(name="Paris", population=2102650)
    assert [m.role for m in chat.generated] == [
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]


async def test_stream_gives_each_answers_text_and_validates_the_last() -> None:
    stream = scripted('{"name": "Paris"}', PARIS).chat("x").structured(City).stream()
    deltas = [delta async for delta in stream]
    assert "".join(deltas) == '{"name": "Paris"}' + PARIS
    assert stream.chat.output == City(name="Paris", population=2102650)


async def test_run_batch_validates_each_chat_on_its_own() -> None:
    def answer(messages: list[Message], params: GenerateParams) -> str:
        name = messages[0].content
        tries = sum(1 for m in messages if m.role == "assistant")
        if name == "never" or (name == "late" and tries == 0):
            return "{}"
        return f'{{"name": "{name}", "population": {tries}}}'

    model = jib.testing.CallbackGenerator(model="cb", callback=answer)
    chats = (
        await model.chat()
        .structured(City, max_corrections=1)
        .run_batch(["Paris", "late", "never"], on_failed="include")
    )
    assert [chat.output for chat in chats] == [
        City(name="Paris", population=0),
        City(name="late", population=1),
        None,
    ]
    assert isinstance(chats[2].error, StructuredOutputError)
    assert model.batch_sizes == [3, 2]


@pytest.mark.parametrize("bad", [dict, City(name="x", population=1), "City"])
def test_structured_takes_a_pydantic_model_class(bad: Any) -> None:
    with pytest.raises(TypeError, match="structured\\(\\) takes a pydantic model class"):
        scripted().chat("x").structured(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_corrections_must_be_a_count(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="max_corrections must be"):
        scripted().chat("x").structured(City, max_corrections=bad)


def test_structured_returns_a_new_pipeline() -> None:
    base = scripted().chat("x")
    structured = base.structured(City)
    assert structured is not base
    assert base.params.response_format is None
    assert structured.params.response_format == response_format_for(City)


# -- over the wire --------------------------------------------------------------------------------


def _json_model(request: ReceivedRequest, answer: Answer) -> None:
    body = request.json()
    tries = sum(1 for m in body["messages"] if m["role"] == "assistant")
    content = '{"name": "Paris"}' if tries == 0 else PARIS
    message = {"role": "assistant", "content": content}
    answer.write(
        http_answer(
            200,
            {
                "id": "c",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            },
        )
    )


@pytest.fixture(scope="module")
def json_model() -> Iterator[ScriptedServer]:
    with serve_script(_json_model) as server:
        yield server


@pytest.mark.parametrize("prefix", ["openai!m", "openai/m"])
async def test_invalid_then_valid_over_openai_and_litellm(
    json_model: ScriptedServer, prefix: str
) -> None:
    json_model.requests.clear()
    generator = jib.get_generator(f"{prefix},api_base={json_model.url}/v1,api_key=sk-j")

    chat = await generator.chat("Describe Paris").structured(City).run()

    assert chat.output == City(name="Paris", population=2102650)
    first, second = (request.json() for request in json_model.requests)
    assert first["response_format"] == response_format_for(City)
    assert second["messages"][-1]["content"].startswith("Your answer is not valid JSON for City")
    assert chat.attempts == 2
