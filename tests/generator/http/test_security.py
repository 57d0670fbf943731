"""Specs are untrusted input: sandboxed templates, safe YAML, and secrets kept out of everything."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import jib
from jib import InvalidGeneratorError, ProcessingError
from jib.generator.http import HTTPGenerator, HTTPSpec
from tests.generator.http.server import RunningServer
from tests.support.forward_proxy import run_forward_proxy

API_KEY = "sk-live-0123456789abcdef"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _spec_yaml(url: str, body: str = "{{ content }}", header: str = "plain") -> str:
    return (
        "request:\n"
        f"  url: {url}\n"
        "  headers:\n"
        f"    X-Test: {header!r}\n"
        "  transforms:\n"
        "    - type: jinja\n"
        f"      pattern: {body!r}\n"
    )


SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{{ lipsum.__globals__['os'].system('touch {marker}') }}",
    "{{ self.__init__.__globals__.__builtins__.open('{marker}', 'w') }}",
    "{% set x = namespace.__init__.__globals__ %}{{ x }}",
]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
@pytest.mark.parametrize("place", ["body", "header"])
async def test_ssti_payload_from_an_identifier_is_blocked_and_runs_nothing(
    server: RunningServer, tmp_path: Path, payload: str, place: str
) -> None:
    marker = tmp_path / "pwned"
    template = payload.replace("{marker}", str(marker))
    spec = (
        _spec_yaml(f"{server.url}/echo", body=template)
        if place == "body"
        else _spec_yaml(f"{server.url}/echo", header=template)
    )
    generator = jib.get_generator(f"http!victim,spec={_b64(spec)}")
    chat = await asyncio.wait_for(generator.chat("x").run(on_failed="include"), timeout=30)
    assert isinstance(chat.error, ProcessingError)
    assert "template blocked by the sandbox" in str(chat.error)
    assert not marker.exists()
    assert server.state.requests == []  # nothing was sent either


async def test_ssti_in_a_response_template_is_blocked(server: RunningServer) -> None:
    spec = {
        "request": {"url": f"{server.url}/echo", "transforms": [{"type": "json", "pattern": {}}]},
        "response": {
            "transforms": [{"type": "jinja", "pattern": "{{ result.__class__.__base__ }}"}]
        },
    }
    chat = await HTTPGenerator(model="m", spec=spec).chat("x").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert "sandbox" in str(chat.error)


@pytest.mark.parametrize(
    "expression", ["{{ 'a' * 100000000 }}", "{{ 9 ** 99999 }}", "{{ [1] * 10000000 }}"]
)
def test_expensive_template_expressions_are_refused(expression: str) -> None:
    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1:9/",
                "transforms": [{"type": "jinja", "pattern": expression}],
            }
        }
    )
    from jib.generator.http import RequestTransformContext

    with pytest.raises(ProcessingError, match="sandbox"):
        spec.make_request_body(RequestTransformContext(content="x"))


def test_sandbox_allows_ordinary_templates() -> None:
    from jib.generator.http import RequestTransformContext

    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1:9/",
                "transforms": [
                    {
                        "type": "jinja",
                        "pattern": "{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ content | tojson }}",
                    }
                ],
            }
        }
    )
    assert spec.make_request_body(RequestTransformContext(content="x")) == 'ababab1024"x"'


def test_yaml_python_object_tag_is_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"!!python/object/apply:os.system ['touch {marker}']\n"
    nested = f"request:\n  url: !!python/object/apply:os.system ['touch {marker}']\n"
    new_object = "request: !!python/object/new:subprocess.Popen [['true']]\n"
    name = "request: {url: !!python/name:os.system ''}\n"
    for text in (evil, nested, new_object, name):
        with pytest.raises(InvalidGeneratorError, match="spec"):
            jib.get_generator(f"http!m,spec={_b64(text)}")
        with pytest.raises(ValidationError, match="could not determine a constructor"):
            HTTPGenerator(model="m").spec = text
    assert not marker.exists()


def test_yaml_alias_bomb_is_rejected() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    previous = "a"
    for name in "bcdefghi":
        bomb += f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]\n"
        previous = name
    bomb += "request: {url: 'http://127.0.0.1:9/'}\n"
    with pytest.raises(ValidationError, match="more than"):
        HTTPSpec.model_validate(bomb)


def test_huge_spec_text_is_rejected() -> None:
    with pytest.raises(ValidationError, match="limit"):
        HTTPSpec.model_validate("request: {url: 'http://127.0.0.1:9/'}\n#" + "x" * 2_000_000)


def _secret_generator(url: str, **kwargs: Any) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        url,
        request_body={"messages": "$messages"},
        api_key=API_KEY,
        auth={"format": "Bearer {api_key}"},
        state={"access_token": "tok-state-secret-123"},
        retry_backoff=0.001,
        **kwargs,
    )


async def test_api_key_never_in_identifier_repr_logs_or_errors(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    generator = _secret_generator(f"{server.url}/leak?status=503", max_retries=1)
    _capture_http_logs(caplog, logging.DEBUG)
    chat = await generator.chat("x").run(on_failed="include")
    assert server.state.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert isinstance(chat.error, jib.ServerError)
    assert len(server.state.requests) == 2
    texts = [
        generator.to_identifier(),
        repr(generator),
        str(generator),
        str(chat.error),
        repr(chat.error),
        chat.to_json(),
        caplog.text,
    ]
    assert "bad credentials: Bearer ***" in str(chat.error)
    assert "retry 1/1" in caplog.text
    for text in texts:
        assert API_KEY not in text
        assert "tok-state-secret-123" not in text


async def test_secrets_stay_out_of_connection_errors(closed_url: str) -> None:
    generator = _secret_generator(f"{closed_url}/x?key={{{{ api_key }}}}", max_retries=0)
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, jib.ProviderConnectionError)
    assert API_KEY not in str(chat.error)
    assert "key=" not in str(chat.error)  # only the origin is named


async def test_hook_errors_are_redacted(server: RunningServer) -> None:
    async def leaky(generator: HTTPGenerator, response: httpx.Response) -> None:
        raise RuntimeError(f"failed with key {generator.get_api_key()}")

    generator = _secret_generator(f"{server.url}/v1/chat/completions", hook=leaky)
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert API_KEY not in str(chat.error)


def test_env_reference_key_is_kept_but_values_are_not() -> None:
    generator = HTTPGenerator.for_json_endpoint(
        "http://127.0.0.1:9/", request_body={}, api_key="env:MY_ENDPOINT_KEY"
    )
    assert ",api_key=env:MY_ENDPOINT_KEY," in generator.to_identifier()


def _capture_http_logs(caplog: pytest.LogCaptureFixture, level: int) -> None:
    # Other libraries in the process (LiteLLM) quieten httpx's loggers; set them explicitly.
    caplog.set_level(level)
    caplog.set_level(level, logger="httpx")
    caplog.set_level(level, logger="httpcore")


@pytest.mark.parametrize("route", ["direct", "proxy"])
async def test_debug_logs_of_a_failing_request_hold_no_secrets(
    server: RunningServer, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    # Direct requests go through aiohttp, which logs nothing of them; through a proxy, httpx
    # sends them, logging each request, and httpcore traces every step at DEBUG.
    with run_forward_proxy() as proxy:
        # The key travels in a header and in the query string, where httpx would log it.
        generator = _secret_generator(
            f"{server.url}/leak?status=503&key={{{{ api_key }}}}&t={{{{ state.access_token }}}}",
            max_retries=1,
            proxy=proxy.url if route == "proxy" else None,
        )
        _capture_http_logs(caplog, logging.DEBUG)
        chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, jib.ServerError)
    assert [r["query"] for r in server.state.requests] == [
        f"status=503&key={API_KEY}&t=tok-state-secret-123"
    ] * 2
    logged = caplog.text
    if route == "proxy":
        assert "HTTP Request: POST" in logged  # httpx logged the request ...
        assert "receive_response_headers" in logged  # ... and httpcore its DEBUG trace
    assert API_KEY not in logged
    assert "tok-state-secret-123" not in logged
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("route", ["direct", "proxy"])
async def test_debug_logs_hold_no_secret_response_headers(
    server: RunningServer, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    with run_forward_proxy() as proxy:
        generator = HTTPGenerator.for_json_endpoint(
            f"{server.url}/headers",
            request_body={},
            proxy=proxy.url if route == "proxy" else None,
        )
        _capture_http_logs(caplog, logging.DEBUG)
        await generator.chat("x")
    if route == "proxy":
        assert "x-request-id" in caplog.text.lower()  # httpcore logged the headers
    for secret in ("secret-cookie", "secret-token", "secret-authorization"):
        assert secret not in caplog.text


async def test_log_redaction_leaves_other_httpx_users_alone(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    await _secret_generator(f"{server.url}/v1/chat/completions").chat("x")
    _capture_http_logs(caplog, logging.INFO)
    async with httpx.AsyncClient() as client:
        await client.get(f"{server.url}/status/200?mine=visible")
    assert f"{server.url}/status/200?mine=visible" in caplog.text


async def test_secret_cut_by_truncation_is_still_redacted(server: RunningServer) -> None:
    # The key straddles the 500-character cut of the error body.
    generator = _secret_generator(f"{server.url}/status/500?body={'x' * 495}{API_KEY}")
    generator.max_retries = 0
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, jib.ServerError)
    assert chat.error.message.endswith("x***")
    assert API_KEY[:5] not in str(chat.error)


async def test_non_ascii_header_value_fails_without_showing_it(server: RunningServer) -> None:
    generator = _secret_generator(f"{server.url}/echo")
    generator.api_key = f"{API_KEY}é"
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert "request.headers['Authorization'] rendered characters that are not ASCII" in str(
        chat.error
    )
    assert API_KEY not in repr(chat.error)
    assert server.state.requests == []


@pytest.mark.parametrize(
    ("host", "message"),
    [("127.0.0.1:99999", "invalid URL"), ("a\x00b", "control character")],
)
async def test_url_that_cannot_be_sent_is_a_processing_error(host: str, message: str) -> None:
    generator = _secret_generator("http://{{ state.host }}/{{ api_key }}", max_retries=0)
    generator.state["host"] = host
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, ProcessingError)
    assert message in str(chat.error)
    assert API_KEY not in repr(chat.error)


def test_prepared_request_repr_hides_url_and_header_values() -> None:
    from jib.generator.http import RequestTransformContext

    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1:9/x?key={{ api_key }}",
                "headers": {"Authorization": "Bearer {{ api_key }}"},
                "transforms": [{"type": "json", "pattern": {"k": "$api_key"}}],
            }
        }
    )
    prepared = spec.build_request(RequestTransformContext(content="x", api_key=API_KEY))
    assert API_KEY in prepared.url and API_KEY in prepared.headers["Authorization"]
    assert repr(prepared) == (
        "PreparedRequest(method='POST', origin='http://127.0.0.1:9', "
        "headers=['Authorization', 'Content-Type'])"
    )
