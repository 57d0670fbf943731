"""`http!` beyond text: templates see messages in the OpenAI shape (parts only where a message
has them) and the params' tools and response format; `response.tool_calls` reads tool calls;
what a spec's request cannot carry is refused before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from jib import (
    BudgetExceededError,
    ContentAudioInput,
    ContentImageUrl,
    FunctionCall,
    FunctionDefinition,
    GenerateParams,
    Message,
    ProcessingError,
    ToolCall,
    ToolDefinition,
    get_generator,
)
from jib.cli._spec_files import expand_spec_file
from jib.generator.http import HTTPGenerator, HTTPSpec, RenderLimits, RequestTransformContext
from tests.generator.http.server import RunningServer

LOOKUP = ToolDefinition(
    function=FunctionDefinition(
        name="lookup",
        description="Look a word up.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
    )
)
TOOLS = GenerateParams(tools=[LOOKUP])
IMAGE = ContentImageUrl.from_bytes(b"\x89PNG\r\n", "image/png", detail="low")
OPENAI_BODY = {
    "model": "$model",
    "messages": "$messages",
    "tools": "$tools",
    "tool_choice": "$tool_choice",
    "response_format": "$response_format",
}
OPENAI_RESPONSE = {
    "content_path": "$.choices[0].message.content",
    "tool_calls_path": "$.choices[0].message.tool_calls",
}


class City(BaseModel):
    name: str


def openai_endpoint(server: RunningServer, **kwargs: Any) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        f"{server.url}/v1/chat/completions",
        request_body=OPENAI_BODY,
        response=OPENAI_RESPONSE,
        model="tiny-chat",
        **kwargs,
    )


def echo_spec(server: RunningServer, body: Any, **response: Any) -> HTTPSpec:
    return HTTPSpec.model_validate(
        {
            "request": {
                "url": f"{server.url}/echo",
                "transforms": [{"type": "json", "pattern": body}],
            },
            "response": response,
        }
    )


def sent(server: RunningServer, index: int = -1) -> Any:
    return json.loads(server.state.requests[index]["body"])


# -- what templates see -----------------------------------------------------------------------


async def test_text_only_conversations_render_exactly_as_before(server: RunningServer) -> None:
    generator = openai_endpoint(server)
    await generator.chat([Message("system", "be brief"), Message("user", "hi")])
    assert server.state.requests[-1]["body"] == (
        '{"model":"tiny-chat","messages":[{"role":"system","content":"be brief"},'
        '{"role":"user","content":"hi"}]}'
    )


async def test_messages_carry_parts_in_the_openai_shape(server: RunningServer) -> None:
    generator = openai_endpoint(server)
    audio = ContentAudioInput.from_bytes(b"RIFF", "wav")

    chat = await generator.chat(
        [Message("system", "be brief"), Message("user", ["what is this", IMAGE, audio])]
    )

    assert sent(server)["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": IMAGE.url, "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            ],
        },
    ]
    assert chat.content == "You said: what is this [image_url] [input_audio]"


async def test_tools_tool_choice_and_response_format_go_where_the_spec_puts_them(
    server: RunningServer,
) -> None:
    generator = openai_endpoint(server)
    params = TOOLS.merge_with(GenerateParams(tool_choice="auto", response_format=City))

    await generator.chat("hi", params)

    body = sent(server)
    assert body["tools"] == [LOOKUP.to_dict()]
    assert body["tool_choice"] == "auto"
    assert body["response_format"]["json_schema"]["name"] == "City"


async def test_unset_tools_and_response_format_leave_their_keys_out(server: RunningServer) -> None:
    await openai_endpoint(server).chat("hi")
    assert set(sent(server)) == {"model", "messages"}


async def test_jinja_templates_see_tools_and_response_format(server: RunningServer) -> None:
    spec = echo_spec(
        server,
        {
            "tools": "{% for tool in tools %}{{ tool.function.name }};{% endfor %}",
            "format": "{{ response_format.type if response_format else 'text' }}",
            "parts": "{{ messages[-1].content | length }}",
        },
        transforms=[{"type": "jsonpath", "pattern": "$.body"}],
    )
    generator = HTTPGenerator(model="m", spec=spec)
    params = TOOLS.merge_with(GenerateParams(response_format={"type": "json_object"}))

    chat = await generator.chat(Message("user", ["a", IMAGE]), params)

    assert json.loads(chat.content) == {"tools": "lookup;", "format": "json_object", "parts": "2"}


def test_a_context_built_by_hand_takes_tools_from_the_params() -> None:
    context = RequestTransformContext.from_messages([Message("user", "hi")], params=TOOLS)
    variables = context.to_variables()
    assert variables["tools"] == [LOOKUP.to_dict()]
    assert variables["tool_choice"] is None and variables["response_format"] is None


# -- tool calls in the response ----------------------------------------------------------------


async def test_tool_calls_come_back_and_a_tool_round_goes_out(server: RunningServer) -> None:
    generator = openai_endpoint(server)

    asked = await generator.chat("define jib", TOOLS)

    assert asked.stop_reason == "tool_calls"
    assert asked.content == ""  # the answer's content is null: it only calls the tool
    (call,) = asked.last.tool_calls
    assert call == ToolCall("call_1", FunctionCall("lookup", '{"text": "define jib"}'))

    answered = await asked.continue_([Message("tool", "a sail", tool_call_id=call.id)]).with_(TOOLS)
    assert answered.content == "The tool said: a sail"
    assert answered.stop_reason == "unknown"
    assert sent(server)["messages"][1:] == [
        {"role": "assistant", "content": "", "tool_calls": [call.to_dict()]},
        {"role": "tool", "content": "a sail", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("answer", "calls"),
    [
        (  # arguments as an object, flat items
            {"calls": [{"name": "lookup", "arguments": {"text": "x"}}]},
            [("lookup", '{"text": "x"}')],
        ),
        (  # OpenAI items, two of them
            {
                "calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "g", "arguments": "[]"}},
                ]
            },
            [("f", "{}"), ("g", "[]")],
        ),
        ({"calls": None}, []),
        ({"calls": []}, []),
        ({"other": 1}, []),
    ],
)
async def test_response_tool_calls_reads_lists_items_and_nothing(
    server: RunningServer, answer: dict[str, Any], calls: list[tuple[str, str]]
) -> None:
    spec = echo_spec(
        server,
        {"answer": answer, "text": "$content"},
        transforms=[{"type": "jsonpath", "pattern": "$.body.text"}],
        tool_calls="$.body.answer.calls",
    )
    chat = await HTTPGenerator(model="m", spec=spec).chat("hello")
    assert [(c.function.name, c.function.arguments) for c in chat.last.tool_calls] == calls
    assert chat.content == "hello"
    assert chat.stop_reason == ("tool_calls" if calls else "unknown")


async def test_without_tool_calls_a_content_path_matching_nothing_still_fails(
    server: RunningServer,
) -> None:
    spec = echo_spec(
        server,
        {"calls": []},
        transforms=[{"type": "jsonpath", "pattern": "$.body.missing"}],
        tool_calls="$.body.calls",
    )
    chat = await HTTPGenerator(model="m", spec=spec).chat("hello").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert "matched nothing" in str(chat.error)


async def test_a_match_that_is_not_a_tool_call_is_a_clear_error(server: RunningServer) -> None:
    spec = echo_spec(
        server,
        {"calls": [{"name": "ok", "arguments": "{}"}, {"arguments": "secret-ish data"}]},
        tool_calls="$.body.calls",
    )
    chat = await HTTPGenerator(model="m", spec=spec).chat("hello").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert "response.tool_calls: match 2 is not a tool call" in str(chat.error)
    assert "secret-ish" not in str(chat.error)


async def test_reading_tool_calls_is_within_the_render_budget(server: RunningServer) -> None:
    calls = [{"name": "f", "arguments": {}} for _ in range(2000)]
    spec = echo_spec(server, {"calls": calls}, tool_calls="$.body.calls[*]")
    generator = HTTPGenerator(model="m", spec=spec, max_retries=0)
    generator.render_limits = RenderLimits(max_steps=5_000)
    chat = await generator.chat("hello").run(on_failed="include")
    assert isinstance(chat.error, BudgetExceededError)
    assert "max_steps" in str(chat.error)
    assert len(server.state.requests) == 1  # sent: the budget ran out reading the answer


def test_an_invalid_tool_calls_path_is_refused_when_the_spec_is_read() -> None:
    with pytest.raises(ValueError, match=r"response\.tool_calls"):
        HTTPSpec.model_validate(
            {"request": {"url": "http://127.0.0.1/x"}, "response": {"tool_calls": "$[?("}}
        )


# -- data: identifiers and spec files ----------------------------------------------------------


def test_the_tool_calls_key_round_trips_through_identifiers_and_spec_files(
    tmp_path: Path,
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        "http://127.0.0.1:9/v1/chat/completions", request_body=OPENAI_BODY, response=OPENAI_RESPONSE
    )
    assert generator.spec is not None
    assert generator.spec.response.tool_calls == "$.choices[0].message.tool_calls"
    assert get_generator(generator.to_identifier()) == generator

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(generator.spec.to_yaml())
    from_file = get_generator(expand_spec_file("http!http,spec=@" + str(spec_file)))
    assert from_file == generator


def test_specs_without_the_new_keys_keep_their_identifiers() -> None:
    spec = HTTPSpec.model_validate({"request": {"url": "http://127.0.0.1/x"}})
    assert spec.to_dict() == {"request": {"url": "http://127.0.0.1/x"}}
    assert HTTPSpec.model_validate(spec.to_dict()) == spec


# -- what a spec cannot carry ------------------------------------------------------------------


def content_only(server: RunningServer) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        f"{server.url}/echo", request_body={"q": "$content", "m": "{{ model }}"}
    )


@pytest.mark.parametrize(
    ("conversation", "said"),
    [
        (
            [Message("user", ["what is this", IMAGE])],
            "message 1 (user), part 2 is an image (image_url, image/png, 6 B), which travels "
            "only in messages",
        ),
        (
            [
                Message("user", "define jib"),
                Message("assistant", "", tool_calls=[ToolCall("c1", FunctionCall("lookup"))]),
                Message("tool", "a sail", tool_call_id="c1"),
            ],
            "message 2 (assistant) holds tool calls",
        ),
    ],
)
async def test_parts_and_tool_rounds_need_a_spec_that_sends_messages(
    server: RunningServer, conversation: list[Message], said: str
) -> None:
    chat = await content_only(server).chat(conversation).run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert said in str(chat.error)
    assert "it reads content, model" in str(chat.error)
    assert server.state.requests == []  # nothing was sent


async def test_a_tool_answer_alone_needs_messages_too(server: RunningServer) -> None:
    conversation = [Message("tool", "a sail", tool_call_id="c1")]
    chat = await content_only(server).chat(conversation).run(on_failed="include")
    assert "answers a tool call" in str(chat.error)
    assert server.state.requests == []


@pytest.mark.parametrize(
    ("params", "said"),
    [
        (TOOLS, "the params set tools, which travels only in tools or params"),
        (GenerateParams(tool_choice="none"), "the params set tool_choice"),
        (GenerateParams(response_format=City), "the params set response_format"),
        (GenerateParams(parallel_tool_calls=False), "parallel_tool_calls, which travels only in"),
        (GenerateParams(modalities=["text", "audio"]), "the params set modalities"),
    ],
)
async def test_params_need_a_spec_that_sends_them(
    server: RunningServer, params: GenerateParams, said: str
) -> None:
    chat = await content_only(server).chat("hi", params).run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert said in str(chat.error)
    assert server.state.requests == []


async def test_a_spec_that_sends_params_carries_them_all(server: RunningServer) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/echo", request_body={"messages": "$messages", "options": "$params"}
    )
    params = TOOLS.merge_with(GenerateParams(parallel_tool_calls=False, modalities=["text"]))
    await generator.chat(Message("user", ["look", IMAGE]), params)
    options = sent(server)["options"]
    assert options["tools"] == [LOOKUP.to_dict()]
    assert options["parallel_tool_calls"] is False


async def test_a_completion_with_tools_is_refused_by_a_spec_without_them(
    server: RunningServer,
) -> None:
    completion = await content_only(server).complete("hi", TOOLS).run(on_failed="include")
    assert isinstance(completion.error, ProcessingError)
    assert server.state.requests == []


def test_what_a_spec_reads_is_known_from_its_templates() -> None:
    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1/{{ model }}",
                "headers": {"X-Key": "{{ api_key }}"},
                "transforms": [
                    {"type": "json", "pattern": {"m": "$messages.0.content", "t": "{{ tools }}"}},
                    {"type": "jinja", "pattern": "{{ result | tojson }}{{ state.x }}"},
                ],
            }
        }
    )
    assert spec.request_reads == {"model", "api_key", "messages", "tools", "result", "state"}
