"""Tool calls written as text by local models (`_tool_text`), in the formats models are trained on.

The texts are what `tokenizer.decode(..., skip_special_tokens=True)` gives for each family:
Qwen's `<tool_call>` is an added token that is not special (it stays), Mistral's `[TOOL_CALLS]`
and Llama's `<|python_tag|>` are special (they usually go, and are read either way).
"""

from __future__ import annotations

import json

import pytest

from jib.generator._tool_text import new_call_id, read_tool_calls, tool_names
from jib.tools import ToolCall

OFFERED = frozenset({"get_weather", "get_time"})


def calls_of(found: list[ToolCall]) -> list[tuple[str, dict[str, object]]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in found]


def test_hermes_qwen_blocks_become_calls_and_the_rest_is_the_content() -> None:
    text = (
        "Let me look that up.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}\n'
        "</tool_call>\n<tool_call>\n"
        '{"name": "get_time", "arguments": {"zone": "Europe/Paris"}}\n</tool_call>'
    )
    content, found = read_tool_calls(text, OFFERED)
    assert content == "Let me look that up."
    assert calls_of(found) == [
        ("get_weather", {"city": "Paris", "unit": "°C"}),
        ("get_time", {"zone": "Europe/Paris"}),
    ]
    assert '"°C"' in found[0].function.arguments  # written as the model wrote it, not escaped
    assert len({call.id for call in found}) == 2


def test_a_tagged_call_is_read_whatever_its_name() -> None:
    content, found = read_tool_calls(
        '<tool_call>{"name": "not_offered", "arguments": {}}</tool_call>', OFFERED
    )
    assert (content, calls_of(found)) == ("", [("not_offered", {})])


def test_a_broken_block_is_left_in_the_text() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    assert read_tool_calls(text, OFFERED) == (text, [])


def test_a_block_cut_by_max_tokens_is_text() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"ci'
    assert read_tool_calls(text, OFFERED) == (text, [])


@pytest.mark.parametrize(
    "text",
    [
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        ' [{"name": "get_weather", "arguments": {"city": "Paris"}}]',  # marker decoded away
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',  # Llama 3, tag decoded away
    ],
)
def test_mistral_and_llama_json_answers_become_calls(text: str) -> None:
    content, found = read_tool_calls(text, OFFERED)
    assert (content, calls_of(found)) == ("", [("get_weather", {"city": "Paris"})])


def test_llama_calls_separated_by_semicolons() -> None:
    text = (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"zone": "UTC"}}'
    )
    assert calls_of(read_tool_calls(text, OFFERED)[1]) == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "UTC"}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "Paris", "population": 2100000}',  # JSON about something, not a call
        '{"name": "unknown_tool", "arguments": {}}',
        '{"name": "get_weather", "arguments": {}} and then some words',
        '[{"name": "get_weather", "arguments": {}}, {"name": "other", "arguments": {}}]',
        '{"name": "get_weather", "arguments": [1, 2]}',
        "[" * 500 + "]" * 500,
    ],
)
def test_bare_json_is_a_call_only_when_it_names_offered_tools(text: str) -> None:
    assert read_tool_calls(text, OFFERED) == (text, [])


def test_bare_json_is_never_a_call_when_no_tools_were_offered() -> None:
    text = '{"name": "get_weather", "arguments": {}}'
    assert read_tool_calls(text, frozenset()) == (text, [])


def test_arguments_given_as_json_text_are_kept_and_an_id_is_kept_when_given() -> None:
    text = '[{"id": "abc123XYZ", "name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}]'
    _, (call,) = read_tool_calls(text, OFFERED)
    assert call.id == "abc123XYZ"
    assert call.function.arguments == '{"city": "Oslo"}'


def test_new_ids_are_nine_letters_and_digits() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(value) == 9 and value.isalnum() and value.isascii() for value in ids)


def test_tool_names_of_openai_shaped_definitions() -> None:
    tools = [
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b", "parameters": {}}},
        {"type": "function"},
    ]
    assert tool_names(tools) == {"a", "b"}
    assert tool_names(None) == frozenset()
