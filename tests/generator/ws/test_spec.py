"""`WSSpec`: bad specs fail with one clear error; frames read as the docs say; specs round-trip."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import jib
from jib.errors import InvalidGeneratorError, ProcessingError
from jib.generator.http.spec import RequestTransformContext
from jib.generator.ws import FrameVerdict, WSGenerator, WSSpec

URL = "ws://127.0.0.1:8766/chat"


def spec(**parts: Any) -> dict[str, Any]:
    request = {"url": URL, "message": "{{ content }}", **parts.pop("request", {})}
    response = parts.pop("response", {"done": {"marker": "[END]"}})
    return {"request": request, "response": response, **parts}


def error_of(data: Any) -> str:
    with pytest.raises(ValidationError) as info:
        WSSpec.model_validate(data)
    return str(info.value)


def test_spec_without_a_message_template_says_what_to_add() -> None:
    data = spec()
    del data["request"]["message"]

    assert "ws! needs request.message, the template of the frame to send" in error_of(data)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8766/chat", "https://bot.example.com", "127.0.0.1:8766", "ftp://x"]
)
def test_a_url_that_is_not_a_websocket_url_is_refused(url: str) -> None:
    message = error_of(spec(request={"url": url}))

    assert "request.url must be a WebSocket URL starting with ws:// or wss://" in message


def test_a_url_template_must_render_a_websocket_url() -> None:
    ws_spec = WSSpec.model_validate(spec(request={"url": "{{ state.where }}"}))
    context = RequestTransformContext(content="hi", state={"where": "http://127.0.0.1:1/x"})

    with pytest.raises(ProcessingError, match="must render to a ws:// or wss:// URL"):
        ws_spec.build_handshake(context)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"jsonpath": "$.type", "regex": "x"}, "a condition is {jsonpath: …, equals: …}"),
        ({"equals": "end"}, "a condition is {jsonpath: …, equals: …}"),
        ({"markr": "[END]"}, "it has markr"),
        ({"regex": "x", "equals": 1}, "'equals' goes with 'jsonpath' only"),
        ({"regex": "("}, "response.done: invalid regex"),
        ({"jsonpath": "$[?("}, "response.done: invalid JSONPath"),
        ({"marker": ""}, "at least 1 character"),
        ({"marker": 5}, "a condition's 'marker' must be a string"),
        ("[END]", "a condition is {jsonpath: …, equals: …}, {regex: …} or {marker: …}, not str"),
    ],
)
def test_a_malformed_condition_is_refused_with_its_shape(condition: Any, expected: str) -> None:
    assert expected in error_of(spec(response={"done": condition}))


def test_a_spec_that_cannot_tell_when_an_answer_ends_is_refused() -> None:
    message = error_of(spec(response={"skip": {"marker": "..."}}))

    assert "set response.done (a condition" in message
    assert "or response.idle_timeout (seconds)" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (spec(request={"transforms": [{"type": "jinja", "pattern": "x"}]}), "request.transforms"),
        (spec(request={"method": "POST"}), "ws! does not use request.method"),
        (spec(response={"done": {"marker": "x"}, "valid_status_codes": [200]}), "response.valid"),
        (spec(steps=[]), "ws! does not use the spec key 'steps'"),
        (spec(response={"idle_timeout": 0}), "greater than 0"),
        (spec(request={"message": 3}), "a template string or a JSON template object"),
        (spec(request={"message": "{{ content"}), "request.message"),
    ],
)
def test_keys_ws_does_not_use_are_refused(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(data)


def test_bad_spec_in_an_identifier_is_an_invalid_generator_error() -> None:
    bad = base64.urlsafe_b64encode(b"request: {url: 'ws://127.0.0.1:1'}").decode()

    with pytest.raises(InvalidGeneratorError, match="ws! needs a response"):
        jib.get_generator(f"ws!bot,spec={bad}")


def test_message_json_template_keeps_types_and_jinja_strings_render() -> None:
    ws_spec = WSSpec.model_validate(
        spec(request={"message": {"messages": "$messages", "model": "{{ model }}", "n": 2}})
    )
    context = RequestTransformContext(messages=[{"role": "user", "content": "hi"}], model="m")

    prepared, frame = ws_spec.build_handshake(context)

    assert prepared.method == "GET"
    assert frame == '{"messages":[{"role":"user","content":"hi"}],"model":"m","n":2}'


@pytest.mark.parametrize(
    ("response", "frame", "verdict"),
    [
        ({"done": {"marker": "[END]"}}, "abc", FrameVerdict(piece="abc")),
        ({"done": {"marker": "[END]"}}, "abc[END]", FrameVerdict(piece="abc", done=True)),
        ({"done": {"marker": "[END]"}}, "[END]", FrameVerdict(done=True)),
        ({"done": {"regex": "^bye$"}}, "bye", FrameVerdict(done=True)),
        ({"done": {"jsonpath": "$.end"}}, '{"end": true}', FrameVerdict(done=True)),
        ({"done": {"jsonpath": "$.end"}}, '{"text": "x"}', FrameVerdict(piece='{"text": "x"}')),
        ({"done": {"jsonpath": "$.t", "equals": None}}, '{"t": null}', FrameVerdict(done=True)),
        ({"done": {"jsonpath": "$.t", "equals": 2}}, '{"t": 2}', FrameVerdict(done=True)),
        ({"done": {"jsonpath": "$.t", "equals": 2}}, "not json", FrameVerdict(piece="not json")),
        (
            {"idle_timeout": 1, "skip": {"jsonpath": "$.type", "equals": "typing"}},
            '{"type": "typing"}',
            FrameVerdict(skipped=True),
        ),
        (
            {
                "transforms": [{"type": "jsonpath", "pattern": "$.text"}],
                "done": {"jsonpath": "$.last", "equals": True},
            },
            '{"text": "end.", "last": true}',
            FrameVerdict(piece="end.", done=True),
        ),
    ],
)
def test_frames_read_as_documented(
    response: dict[str, Any], frame: str, verdict: FrameVerdict
) -> None:
    assert WSSpec.model_validate(spec(response=response)).read_frame(frame) == verdict


def test_equals_null_survives_a_round_trip() -> None:
    original = WSSpec.model_validate(spec(response={"done": {"jsonpath": "$.t", "equals": None}}))

    rebuilt = WSSpec.model_validate(original.to_base64())

    assert rebuilt.read_frame('{"t": 1}') == FrameVerdict(piece='{"t": 1}')
    assert rebuilt.read_frame('{"t": null}') == FrameVerdict(done=True)


def test_spec_round_trips_through_base64_yaml_and_json() -> None:
    original = WSSpec.model_validate(
        spec(
            request={"headers": {"X-Client": "jib"}, "connection": "session", "timeout": 5},
            response={
                "transforms": [{"type": "jsonpath", "pattern": "$.text"}],
                "skip": {"regex": "typing"},
                "done": {"jsonpath": "$.type", "equals": "end"},
                "idle_timeout": 2.5,
            },
        )
    )

    for text in (original.to_base64(), original.to_yaml(), original.to_json()):
        assert WSSpec.model_validate(text) == original


@settings(max_examples=40, deadline=None)
@given(
    message=st.text(min_size=1, max_size=40).filter(lambda t: "{" not in t and "}" not in t),
    marker=st.text(min_size=1, max_size=10),
    idle=st.floats(min_value=0.01, max_value=3600),
)
def test_any_message_and_marker_round_trip_through_an_identifier(
    message: str, marker: str, idle: float
) -> None:
    generator = WSGenerator(
        model="bot,with=odd!chars",
        spec=spec(
            request={"message": message},
            response={"done": {"marker": marker}, "idle_timeout": idle},
        ),
    )

    rebuilt = jib.get_generator(generator.to_identifier())

    assert rebuilt == generator


def test_build_request_shows_the_handshake_with_the_frame_as_its_content() -> None:
    ws_spec = WSSpec.model_validate(
        spec(request={"headers": {"Authorization": "Bearer {{ api_key }}"}})
    )

    request = ws_spec.build_request(RequestTransformContext(content="hi", api_key="k"))

    assert (request.method, request.url, request.content) == ("GET", URL, "hi")
    assert request.headers == {"Authorization": "Bearer k"}


def test_generator_pickles_and_copies_with_fresh_or_shared_connections() -> None:
    import copy
    import pickle

    generator = WSGenerator(model="bot", spec=spec())
    sockets = generator.websockets

    assert pickle.loads(pickle.dumps(generator)) == generator
    assert copy.deepcopy(generator) == generator
    assert generator.model_copy().websockets is sockets
    assert pickle.loads(pickle.dumps(generator)).websockets is not sockets
