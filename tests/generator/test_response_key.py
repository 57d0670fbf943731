"""The response cache's key: what each provider says decides an answer, and what it leaves out.

No server is needed: the key is worked out from the request a generator would send, before
anything is sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import jib
from jib import ContentImageUrl, ContentText
from jib.generator._response_key import (
    SentRequest,
    keep_sent_body,
    key_prefix,
    request_key,
    sending_bodies,
    sent_body,
)
from jib.generator.http import HTTPGenerator
from jib.messages import Message
from jib.params import GenerateParams

HI = [Message("user", "hi")]


def key(generator: jib.Generator, params: GenerateParams | None = None, item: Any = None) -> str:
    request = generator.response_cache_request(
        HI if item is None else item, params or GenerateParams()
    )
    return request_key({"generator": generator.response_cache_identity(), "request": request})


def test_openai_keys_the_url_and_the_body_it_sends() -> None:
    generator = jib.get_generator("openai!m,api_base=http://127.0.0.1:9/v1")
    material = generator.response_cache_request(HI, GenerateParams(temperature=0.5))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    url = "http://127.0.0.1:9/v1/chat/completions"
    assert material == SentRequest(url, json.dumps(body).encode())  # the very bytes it sends
    text = generator.response_cache_request("Once", GenerateParams())
    assert text.url.endswith("/completions") and json.loads(text.body)["prompt"] == "Once"
    # A body with content parts (its media written apart when sent) is keyed by its JSON.
    image = ContentImageUrl(url="data:image/png;base64,iVBORw0KGgo=")
    parts = [Message("user", [ContentText("what is it?"), image])]
    with_parts = generator.response_cache_request(parts, GenerateParams())
    assert with_parts["body"]["messages"][0]["content"][1]["type"] == "image_url"


@pytest.mark.parametrize(
    "identifier",
    [
        "openai!m,api_base=http://127.0.0.1:9/v1",
        "ollama_chat/qwen3:0.6b,api_base=http://127.0.0.1:9",
        "echo!demo",
    ],
)
def test_secrets_and_sending_settings_leave_the_key_alone(identifier: str) -> None:
    base = jib.get_generator(identifier)
    same = [jib.get_generator(identifier + ",api_key=sk-other-key-1234")]
    if not identifier.startswith("echo!"):  # request settings, of providers that send requests
        same += [
            jib.get_generator(identifier + ",max_retries=0,rpm=10"),
            jib.get_generator(identifier + ",max_connections=3"),
        ]
    assert all(key(generator) == key(base) for generator in same)
    assert key(base, GenerateParams(timeout=5)) == key(base)


@pytest.mark.parametrize(
    "identifier",
    [
        "openai!m,api_base=http://127.0.0.1:9/v1",
        "ollama_chat/qwen3:0.6b,api_base=http://127.0.0.1:9",
        "echo!demo",
    ],
)
def test_what_decides_the_answer_changes_the_key(identifier: str) -> None:
    base = jib.get_generator(identifier)
    keys = {
        key(base),
        key(base, GenerateParams(temperature=0.2)),
        key(base, GenerateParams(seed=1)),
        key(base, GenerateParams(extra={"num_ctx": 8192})),  # LiteLLM's Ollama option
        key(base, GenerateParams(response_format={"type": "json_object"})),
        key(base, item=[Message("system", "be brief"), *HI]),
        key(base, item=[Message("user", "hi!")]),
    }
    assert len(keys) == 7


def test_the_endpoint_and_the_model_change_the_key() -> None:
    one = jib.get_generator("openai!m,api_base=http://127.0.0.1:9/v1")
    assert key(one) != key(jib.get_generator("openai!m,api_base=http://127.0.0.1:10/v1"))
    assert key(one) != key(jib.get_generator("openai!n,api_base=http://127.0.0.1:9/v1"))
    litellm = jib.get_generator("ollama_chat/qwen3:0.6b,api_base=http://127.0.0.1:9")
    assert key(litellm) != key(jib.get_generator("ollama_chat/qwen3:0.6b,api_base=http://h:9"))
    assert key(jib.get_generator("echo!a")) != key(jib.get_generator("echo!a,prefix=>"))


def test_http_keys_the_rendered_request_without_its_auth_header() -> None:
    def generator(api_key: str, model: str = "m") -> HTTPGenerator:
        return HTTPGenerator.for_json_endpoint(
            url="http://127.0.0.1:9/chat",
            request_body={"model": "{{ model }}", "messages": "$messages", "key": "{{ api_key }}"},
            response="$.answer",
            api_key=api_key,
            model=model,
            auth={"header": "Authorization", "format": "Bearer {api_key}"},
            headers={"X-Team": "blue"},
        )

    material = generator("sk-first-secret").response_cache_request(HI, GenerateParams())
    assert material["url"] == "http://127.0.0.1:9/chat"
    assert "authorization" not in material["headers"] and material["headers"]["x-team"] == "blue"
    first = request_key(material, ["sk-first-secret"])
    second_material = generator("sk-other-secret").response_cache_request(HI, GenerateParams())
    assert request_key(second_material, ["sk-other-secret"]) == first  # the key is blanked
    other_model = generator("sk-first-secret", "n").response_cache_request(HI, GenerateParams())
    assert request_key(other_model, ["sk-first-secret"]) != first
    # The spec is the generator's identity: what reads the answer decides it too.
    one, two = generator("k"), generator("k")
    two.spec = two.spec.model_copy(
        update={"response": two.spec.response.model_copy(update={"valid_status_codes": [201]})}
    )
    assert one.response_cache_identity() != two.response_cache_identity()
    assert "sk-first-secret" not in str(generator("sk-first-secret").response_cache_identity())


def test_a_generator_marked_uncacheable_says_why() -> None:
    assert jib.get_generator("echo!x").response_cache_refusal() is None
    refusal = jib.get_generator("fail!x").response_cache_refusal()
    assert refusal is not None and "never cached" in refusal


def test_a_batch_of_requests_is_each_item_s_request() -> None:
    generator = jib.get_generator("openai!m,api_base=http://127.0.0.1:9/v1")
    shared, own = GenerateParams(temperature=0.5), GenerateParams(seed=3, extra={"top_k": 2})
    items: list[Any] = [HI, [Message("system", "be brief"), *HI], "Once", HI]
    params = [shared, shared, own, own]
    pairs = list(zip(items, params, strict=True))
    batch = generator.response_cache_requests(items, params)
    assert batch == [generator.response_cache_request(i, p) for i, p in pairs]
    echo = jib.get_generator("echo!demo")  # the default: item by item
    assert echo.response_cache_requests(items, params) == [
        echo.response_cache_request(i, p) for i, p in pairs
    ]


def test_a_sent_request_is_hashed_as_its_bytes_with_secrets_blanked() -> None:
    prefix = key_prefix("chat", {"provider": "openai"}, ["sk-first-secret"])
    url = "http://127.0.0.1:9/v1/chat/completions"
    one = prefix.key(SentRequest(url, b'{"model":"m","key":"sk-first-secret"}'))
    other = key_prefix("chat", {"provider": "openai"}, ["sk-other-secret"])
    assert other.key(SentRequest(url, b'{"model":"m","key":"sk-other-secret"}')) == one
    assert prefix.key(SentRequest(url, b'{"model":"n","key":"sk-first-secret"}')) != one
    assert prefix.key(SentRequest(url + "/", b'{"model":"m","key":"sk-first-secret"}')) != one
    written = prefix.written({"request": SentRequest(url, b'{"a": 1}')})
    assert json.loads(written) == {"request": {"body": {"a": 1}, "url": url}}


def test_a_body_written_for_the_key_is_only_sent_by_the_same_request() -> None:
    item, params = [Message("user", "hi")], GenerateParams()
    keep_sent_body(item, params, ("m", "http://h/v1"), b"{}")  # outside a batch: not kept
    assert sent_body(item, params, ("m", "http://h/v1")) is None
    with sending_bodies():
        keep_sent_body(item, params, ("m", "http://h/v1"), b"{}")
        assert sent_body(item, params, ("m", "http://h/v1")) == b"{}"
        assert sent_body(item, params, ("n", "http://h/v1")) is None  # another model
        assert sent_body(item, GenerateParams(), ("m", "http://h/v1")) is None
        assert sent_body(list(item), params, ("m", "http://h/v1")) is None
    assert sent_body(item, params, ("m", "http://h/v1")) is None  # the batch is over


def test_a_material_with_keys_that_are_not_strings_is_written_too() -> None:
    assert request_key({"extra": {1: "a"}}) == request_key({"extra": {"1": "a"}})
    assert request_key({"extra": {1: "a"}}) != request_key({"extra": {2: "a"}})
