"""The seed's spec semantics: Jinja response steps see JSON parsed, contexts take plain dicts,
several JSONPath matches are written as the seed writes them, hooks return `HookAction`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import jib
from jib import ProcessingError
from jib.generator.http import HookAction, HTTPGenerator, HTTPSpec, RequestTransformContext
from tests.generator.http.server import RunningServer

COHERE_V2_BODY = json.dumps(
    {
        "id": "c-1",
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": "cohere: "}, {"type": "text", "text": "and now?"}],
        },
        "finish_reason": "COMPLETE",
    }
)


def response_spec(*steps: dict[str, str]) -> HTTPSpec:
    return HTTPSpec.model_validate(
        {"request": {"url": "http://127.0.0.1:1/chat"}, "response": {"transforms": list(steps)}}
    )


def test_jinja_after_a_jsonpath_with_several_matches_joins_the_strings() -> None:
    spec = response_spec(
        {"type": "jsonpath", "pattern": "$.message.content[*].text"},
        {"type": "jinja", "pattern": "{{ result | join('') }}"},
    )
    assert spec.parse_response_body(COHERE_V2_BODY) == "cohere: and now?"


def test_jinja_after_a_jsonpath_sees_a_matched_string_as_it_is() -> None:
    body = json.dumps({"reply": "[1, 2]"})  # text that looks like JSON stays text
    spec = response_spec(
        {"type": "jsonpath", "pattern": "$.reply"},
        {"type": "jinja", "pattern": "{{ result | length }}"},
    )
    assert spec.parse_response_body(body) == "6"


def test_jinja_after_a_jsonpath_that_matched_null_sees_none() -> None:
    spec = response_spec(
        {"type": "jsonpath", "pattern": "$.reply"},
        {"type": "jinja", "pattern": "{{ 'empty' if result is none else result }}"},
    )
    assert spec.parse_response_body('{"reply": null}') == "empty"


def test_jinja_first_step_reads_a_json_body_as_data() -> None:
    spec = response_spec({"type": "jinja", "pattern": "{{ data.message.content[1].text }}"})
    assert spec.parse_response_body(COHERE_V2_BODY) == "and now?"


def test_jinja_step_keeps_text_that_is_not_a_json_object_or_array() -> None:
    spec = response_spec({"type": "jinja", "pattern": "<{{ result }}>"})
    assert spec.parse_response_body("true") == "<true>"
    assert spec.parse_response_body("[not json") == "<[not json>"
    assert spec.parse_response_body("  plain  ") == "<  plain  >"


def test_jinja_after_a_regex_parses_json_the_regex_extracted() -> None:
    spec = response_spec(
        {"type": "regex", "pattern": r"DATA: (.*)"},
        {"type": "jinja", "pattern": "{{ output.answer }}"},
    )
    assert spec.parse_response_body('log line\nDATA: {"answer": "42"}') == "42"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("$.a[*]", "[1, 2]"),
        ("$.b", '{"c": "d", "e": [true, null]}'),
        ("$.s[*]", '["x", "é"]'),
    ],
)
def test_jsonpath_writes_values_that_are_not_strings_as_the_seed_does(
    pattern: str, expected: str
) -> None:
    body = json.dumps({"a": [1, 2], "b": {"c": "d", "e": [True, None]}, "s": ["x", "é"]})
    assert response_spec({"type": "jsonpath", "pattern": pattern}).parse_response_body(body) == (
        expected
    )


def test_context_takes_plain_dict_messages_and_derives_content() -> None:
    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1:1/chat",
                "transforms": [
                    {"type": "json", "pattern": {"messages": "$messages", "last": "$content"}}
                ],
            }
        }
    )
    context = RequestTransformContext(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ]
    )

    assert json.loads(spec.make_request_body(context) or "") == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "last": "Hello",
    }
    assert (context.content, context.role, context.all_content) == (
        "Hello",
        "user",
        "Be brief.\nHello",
    )


def test_context_keeps_content_it_is_given() -> None:
    context = RequestTransformContext(
        content="override", messages=[{"role": "user", "content": "Hello"}]
    )
    assert context.content == "override"
    assert context.messages == [jib.Message("user", "Hello")]


def test_context_with_a_malformed_message_names_it() -> None:
    with pytest.raises(ProcessingError, match=r"messages\[1\]: .*'content' is missing"):
        RequestTransformContext(
            messages=[{"role": "user", "content": "a"}, {"role": "user", "text": "b"}]
        )


async def test_cohere_v2_answer_joined_end_to_end(server: RunningServer) -> None:
    # /echo answers {"body": <the request body>}: the request builds a Cohere v2 answer.
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/echo",
        request_body={
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "cohere: "},
                    {"type": "text", "text": "$content"},
                ],
            }
        },
    )
    assert generator.spec is not None
    generator.spec.response.transforms = [
        *generator.spec.response.transforms,
        {"type": "jsonpath", "pattern": "$.body.message.content[*].text"},  # type: ignore[list-item]
        {"type": "jinja", "pattern": "{{ result | join('') }}"},  # type: ignore[list-item]
    ]

    chat = await generator.chat("and now?")

    assert chat.content == "cohere: and now?"


async def test_hook_may_return_hook_action_members(server: RunningServer) -> None:
    decisions: list[Any] = []

    async def judge(generator: HTTPGenerator, response: httpx.Response) -> HookAction:
        action = HookAction.RAISE if "forbidden" in response.text else HookAction.CONTINUE
        decisions.append(action)
        return action

    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/v1/chat/completions",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        hook=judge,
    )
    assert (await generator.chat("fine")).content == "You said: fine"
    failed = await generator.chat("forbidden word").run(on_failed="include")

    assert isinstance(failed.error, jib.ProviderError)
    assert failed.error.status_code == 200
    assert decisions == ["continue", "raise"]


async def test_hook_action_retry_sends_again(server: RunningServer) -> None:
    calls = 0

    def retry_once(generator: HTTPGenerator, response: httpx.Response) -> HookAction | None:
        nonlocal calls
        calls += 1
        return jib.generator.HookAction.RETRY if calls == 1 else None

    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/v1/chat/completions",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        hook=retry_once,
    )
    chat = await generator.chat("again")

    assert chat.content == "You said: again"
    assert len(server.state.requests) == 2
    assert str(HookAction.RETRY) == "retry"
