"""HTTPSpec: parsing, request building and response parsing, without a network."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import jib
from jib import GenerateParams, Message, ProcessingError
from jib.generator.http import HTTPGenerator, HTTPSpec, RequestTransformContext

URL = "http://127.0.0.1:9/v1/chat"


def spec_with(
    request_transforms: list[dict[str, Any]] | None = None,
    response_transforms: list[dict[str, Any]] | None = None,
    **request: Any,
) -> HTTPSpec:
    return HTTPSpec.model_validate(
        {
            "request": {"url": URL, "transforms": request_transforms or [], **request},
            "response": {"transforms": response_transforms or []},
        }
    )


def context(**overrides: Any) -> RequestTransformContext:
    messages = [Message("system", "Be brief."), Message("user", "Hello there")]
    values: dict[str, Any] = {
        "api_key": "sk-test",
        "model": "m1",
        "state": {"session_id": "s-9", "count": 3},
        "params": GenerateParams(temperature=0.5, max_tokens=20),
    }
    values.update(overrides)
    return RequestTransformContext.from_messages(messages, **values)


# -- request transforms --------------------------------------------------------------------------


def test_json_template_substitution_keeps_types() -> None:
    spec = spec_with(
        [
            {
                "type": "json",
                "pattern": {
                    "messages": "$messages",
                    "temperature": "$params.temperature",
                    "count": "$state.count",
                    "first": "$messages.0.content",
                    "nested": {"list": ["$content", {"deep": "$params.max_tokens"}]},
                    "literal": "keep me",
                    "number": 7,
                },
            }
        ]
    )
    body = json.loads(spec.make_request_body(context()) or "")
    assert body == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "temperature": 0.5,
        "count": 3,
        "first": "Be brief.",
        "nested": {"list": ["Hello there", {"deep": 20}]},
        "literal": "keep me",
        "number": 7,
    }


def test_json_template_strings_may_hold_jinja() -> None:
    spec = spec_with(
        [
            {
                "type": "json",
                "pattern": {"model": "{{ model }}", "session": "{{ state.session_id }}"},
            }
        ]
    )
    assert json.loads(spec.make_request_body(context()) or "") == {
        "model": "m1",
        "session": "s-9",
    }


def test_jinja_request_transform_renders_the_body() -> None:
    spec = spec_with([{"type": "jinja", "pattern": "{{ role }}: {{ content | upper }}"}])
    assert spec.make_request_body(context()) == "user: HELLO THERE"


def test_every_context_variable_is_available() -> None:
    template = (
        "{{ content }}|{{ messages | length }}|{{ api_key }}|{{ model }}|{{ state.session_id }}"
        "|{{ params.temperature }}|{{ all_content }}|{{ role }}"
    )
    spec = spec_with([{"type": "jinja", "pattern": template}])
    assert spec.make_request_body(context()) == (
        "Hello there|2|sk-test|m1|s-9|0.5|Be brief.\nHello there|user"
    )


def test_request_transforms_chain_through_result_data_and_output() -> None:
    spec = spec_with(
        [
            {"type": "jinja", "pattern": "{{ content }}!"},
            {"type": "json", "pattern": {"a": "$result", "b": "$data", "c": "{{ output }}?"}},
        ]
    )
    assert json.loads(spec.make_request_body(context()) or "") == {
        "a": "Hello there!",
        "b": "Hello there!",
        "c": "Hello there!?",
    }


def test_no_request_transforms_means_no_body() -> None:
    assert spec_with().make_request_body(context()) is None


def test_missing_json_variable_is_a_processing_error() -> None:
    spec = spec_with([{"type": "json", "pattern": {"x": "$state.missing"}}])
    with pytest.raises(ProcessingError, match=r"\$state\.missing.*not found"):
        spec.make_request_body(context())


def test_missing_jinja_variable_is_a_processing_error_not_an_empty_string() -> None:
    spec = spec_with([{"type": "jinja", "pattern": "Hi {{ nobody }}"}])
    with pytest.raises(ProcessingError, match=r"missing template variable.*nobody"):
        spec.make_request_body(context())


def test_missing_api_key_is_undefined_in_templates() -> None:
    spec = spec_with(headers={"Authorization": "Bearer {{ api_key }}"})
    with pytest.raises(ProcessingError, match=r"request\.headers\['Authorization'\]"):
        spec.make_headers(context(api_key=None))


def test_header_templates_with_jinja_defaults() -> None:
    spec = spec_with(
        headers={
            "Authorization": "Bearer {{ state.access_token | default('anonymous') }}",
            "X-Session": "{{ state.session_id }}",
            "X-Static": "plain",
        }
    )
    assert spec.make_headers(context()) == {
        "Authorization": "Bearer anonymous",
        "X-Session": "s-9",
        "X-Static": "plain",
    }


def test_header_that_renders_a_line_break_is_refused() -> None:
    spec = spec_with(headers={"X-Session": "{{ state.session_id }}"})
    with pytest.raises(ProcessingError, match="line break"):
        spec.make_headers(context(state={"session_id": "a\r\nX-Evil: 1"}))


def test_url_is_a_template_and_must_render_to_http() -> None:
    spec = HTTPSpec.model_validate({"request": {"url": "{{ state.base }}/chat/{{ model }}"}})
    assert spec.make_url(context(state={"base": "http://127.0.0.1:9"})) == (
        "http://127.0.0.1:9/chat/m1"
    )
    with pytest.raises(ProcessingError, match="http"):
        spec.make_url(context(state={"base": "file:///etc"}))


def test_now_is_available_in_templates() -> None:
    spec = spec_with([{"type": "jinja", "pattern": "{{ now().year }}"}])
    assert int(spec.make_request_body(context()) or "0") >= 2024


def test_json_body_gets_a_json_content_type() -> None:
    spec = spec_with([{"type": "json", "pattern": {"q": "$content"}}])
    prepared = spec.build_request(context())
    assert prepared.headers["Content-Type"] == "application/json"
    assert prepared.method == "POST"


# -- response transforms -------------------------------------------------------------------------

OPENAI_BODY = json.dumps(
    {
        "choices": [{"message": {"role": "assistant", "content": "Bonjour"}}],
        "foo": [{"baz": 1}, {"baz": "two"}],
        "flag": "FLAG{x}",
        "usage": {"total_tokens": 42},
    }
)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("$.choices[0].message.content", "Bonjour"),
        ("foo[*].baz", '[1, "two"]'),
        ("$.usage.total_tokens", "42"),
        ("$.usage", '{"total_tokens": 42}'),
        ("$.flag,output,message", "FLAG{x}"),
    ],
)
def test_jsonpath_extracts_values(pattern: str, expected: str) -> None:
    spec = spec_with(response_transforms=[{"type": "jsonpath", "pattern": pattern}])
    assert spec.parse_response_body(OPENAI_BODY) == expected


def test_jsonpath_root_gives_the_whole_document_as_json() -> None:
    spec = spec_with(response_transforms=[{"type": "jsonpath", "pattern": "$"}])
    assert json.loads(spec.parse_response_body(OPENAI_BODY)) == json.loads(OPENAI_BODY)


def test_jsonpath_union_of_field_names_gives_every_match() -> None:
    spec = spec_with(response_transforms=[{"type": "jsonpath", "pattern": "$.flag,output"}])
    body = json.dumps({"output": "o", "flag": "f"})
    assert json.loads(spec.parse_response_body(body)) == ["f", "o"]


def test_jsonpath_that_matches_nothing_names_the_pattern() -> None:
    spec = spec_with(response_transforms=[{"type": "jsonpath", "pattern": "$.answer"}])
    with pytest.raises(ProcessingError, match=r"jsonpath '\$\.answer' matched nothing"):
        spec.parse_response_body(OPENAI_BODY)


def test_jsonpath_on_a_body_that_is_not_json_is_a_processing_error() -> None:
    spec = spec_with(response_transforms=[{"type": "jsonpath", "pattern": "$.a"}])
    with pytest.raises(ProcessingError, match="needs a JSON response"):
        spec.parse_response_body("<html>oops</html>")


def test_regex_gives_the_first_group_or_the_whole_match() -> None:
    grouped = spec_with(response_transforms=[{"type": "regex", "pattern": r"Answer: (\w+)"}])
    whole = spec_with(response_transforms=[{"type": "regex", "pattern": r"\d+"}])
    assert grouped.parse_response_body("xx Answer: yes\n") == "yes"
    assert whole.parse_response_body("abc 123 456") == "123"


def test_regex_that_matches_nothing_names_the_pattern() -> None:
    spec = spec_with(response_transforms=[{"type": "regex", "pattern": r"Answer: (\w+)"}])
    with pytest.raises(ProcessingError, match=re.escape(r"regex 'Answer: (\w+)' matched nothing")):
        spec.parse_response_body("no answer here")


def test_catastrophic_regex_fails_in_bounded_time() -> None:
    spec = spec_with(response_transforms=[{"type": "regex", "pattern": r"(a|aa)+$"}])
    with pytest.raises(ProcessingError, match="took longer than"):
        spec.parse_response_body("a" * 60 + "!")


def test_response_jinja_sees_result_and_context() -> None:
    spec = spec_with(
        response_transforms=[
            {"type": "jinja", "pattern": "{{ (result | fromjson).flag }} for {{ model }}"}
        ]
    )
    assert spec.parse_response_body(OPENAI_BODY, context()) == "FLAG{x} for m1"


def test_response_transforms_chain() -> None:
    spec = spec_with(
        response_transforms=[
            {"type": "jsonpath", "pattern": "$.choices[0].message.content"},
            {"type": "regex", "pattern": "(B\\w{3})"},
            {"type": "jinja", "pattern": "{{ result }}/{{ data }}/{{ output | lower }}"},
        ]
    )
    assert spec.parse_response_body(OPENAI_BODY) == "Bonj/Bonj/bonj"


def test_no_response_transforms_return_the_body() -> None:
    assert spec_with().parse_response_body("raw text") == "raw text"


def test_error_path_extracts_the_message() -> None:
    spec = HTTPSpec.model_validate(
        {"request": {"url": URL}, "response": {"error_path": "$.error.message"}}
    )
    assert spec.extract_error('{"error": {"message": "no such model"}}') == "no such model"
    assert spec.extract_error("not json") is None


# -- validation ----------------------------------------------------------------------------------


def test_invalid_transform_type_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        spec_with([{"type": "xml", "pattern": "x"}])
    assert "request.transforms.0.type" in str(info.value)
    with pytest.raises(ValidationError) as response_info:
        spec_with(response_transforms=[{"type": "json", "pattern": "x"}])
    assert "response.transforms.0.type" in str(response_info.value)


def test_template_syntax_error_is_rejected_at_validation() -> None:
    with pytest.raises(ValidationError, match=r"request\.headers\['X-A'\].*Jinja"):
        spec_with(headers={"X-A": "{{ unclosed"})


def test_invalid_regex_and_jsonpath_are_rejected_at_validation() -> None:
    with pytest.raises(ValidationError, match=r"response\.transforms\[0\].*regex"):
        spec_with(response_transforms=[{"type": "regex", "pattern": "(unclosed"}])
    with pytest.raises(ValidationError, match=r"response\.transforms\[0\].*JSONPath"):
        spec_with(response_transforms=[{"type": "jsonpath", "pattern": "$[[["}])


def test_unknown_keys_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="urll"):
        HTTPSpec.model_validate({"request": {"url": URL, "urll": URL}})
    with pytest.raises(ValidationError, match="method must be one of"):
        HTTPSpec.model_validate({"request": {"url": URL, "method": "FETCH"}})
    with pytest.raises(ValidationError, match="request"):
        HTTPSpec.model_validate({"response": {}})


def test_spec_text_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must be a mapping"):
        HTTPSpec.model_validate("- just\n- a list\n")
    with pytest.raises(ValidationError, match="neither valid JSON nor valid YAML"):
        HTTPSpec.model_validate("request: [unclosed")


# -- input forms and identifiers -----------------------------------------------------------------

SPEC_DICT: dict[str, Any] = {
    "request": {
        "url": URL,
        "headers": {"Authorization": "Bearer {{ api_key }}"},
        "transforms": [{"type": "json", "pattern": {"messages": "$messages", "n": 2}}],
    },
    "response": {
        "valid_status_codes": [200, 201],
        "transforms": [{"type": "jsonpath", "pattern": "$.choices[0].message.content"}],
    },
}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "form",
    [
        SPEC_DICT,
        json.dumps(SPEC_DICT),
        yaml.safe_dump(SPEC_DICT),
        _b64(json.dumps(SPEC_DICT)),
        _b64(yaml.safe_dump(SPEC_DICT)),
        json.dumps(SPEC_DICT).encode(),
        HTTPSpec.model_validate(SPEC_DICT),
    ],
    ids=["dict", "json", "yaml", "base64-json", "base64-yaml", "bytes", "model"],
)
def test_spec_is_assignable_in_every_form(form: Any) -> None:
    generator = HTTPGenerator(model="m")
    generator.spec = form
    assert generator.spec == HTTPSpec.model_validate(SPEC_DICT)


def test_invalid_spec_assignment_says_which_field() -> None:
    generator = HTTPGenerator(model="m")
    bad = {**SPEC_DICT, "response": {"valid_status_codes": ["ok"]}}
    with pytest.raises(ValidationError) as info:
        generator.spec = bad
    assert "spec.response.valid_status_codes.0" in str(info.value)
    assert generator.spec is None


def test_identifier_round_trip_rebuilds_an_equal_generator() -> None:
    generator = HTTPGenerator(
        model="challenge-1",
        spec=SPEC_DICT,
        api_key="sk-very-secret",
        max_retries=1,
        state={"access_token": "tok-very-secret"},
        params=GenerateParams(temperature=0.2),
    )
    identifier = generator.to_identifier()
    assert identifier.startswith("http!challenge-1,spec=")
    assert "sk-very-secret" not in identifier
    assert "tok-very-secret" not in identifier
    assert (
        "access_token"
        not in base64.urlsafe_b64decode(identifier.split("spec=")[1].split(",")[0] + "==").decode()
    )
    rebuilt = jib.get_generator(identifier)
    assert isinstance(rebuilt, HTTPGenerator)
    assert rebuilt.spec == generator.spec
    assert rebuilt.max_retries == 1
    assert rebuilt.params.temperature == 0.2
    assert rebuilt.api_key is None and rebuilt.state == {}
    rebuilt.api_key = generator.api_key
    assert rebuilt == generator
    assert rebuilt.to_identifier() == identifier


def test_spec_in_identifier_is_base64_of_yaml() -> None:
    identifier = HTTPGenerator(model="m", spec=SPEC_DICT).to_identifier()
    encoded = identifier.split("spec=", 1)[1]
    text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert yaml.safe_load(text) == HTTPSpec.model_validate(SPEC_DICT).to_dict()


def test_identifier_accepts_plain_json_spec() -> None:
    from urllib.parse import quote

    identifier = f"http!m,spec={quote(json.dumps(SPEC_DICT), safe='')}"
    generator = jib.get_generator(identifier)
    assert isinstance(generator, HTTPGenerator)
    assert generator.spec == HTTPSpec.model_validate(SPEC_DICT)


_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="{}%#", blacklist_categories=("Cs",)),
    max_size=30,
)
# Control characters (line breaks included) are refused in header values.
_HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="{}%#", blacklist_categories=("Cs", "Cc")),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(path=_TEXT, header=_HEADER_TEXT, literal=_TEXT, pattern=st.sampled_from(["$.a", "$.b[0]"]))
def test_any_spec_round_trips_through_identifiers(
    path: str, header: str, literal: str, pattern: str
) -> None:
    spec = {
        "request": {
            "url": f"http://127.0.0.1:9/{path}",
            "headers": {"X-Value": header},
            "transforms": [{"type": "json", "pattern": {"v": literal, "list": [1, 2.5, None]}}],
        },
        "response": {"transforms": [{"type": "jsonpath", "pattern": pattern}]},
    }
    generator = HTTPGenerator(model="m", spec=spec)
    assert jib.get_generator(generator.to_identifier()) == generator
