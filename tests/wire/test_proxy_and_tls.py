"""`openai!` and `http!` through an interception proxy: the environment's HTTP(S)_PROXY/NO_PROXY,
the `proxy=` and `verify=` attributes, against a real forwarding proxy and a real TLS server on
127.0.0.1. Both providers send through the one wire, so every test here runs on both."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import jib
from jib import InvalidGeneratorError, ProcessingError, ProviderConnectionError
from jib.generator._wired import WiredGenerator
from jib.generator.http import HTTPGenerator
from jib.generator.openai import OpenAIGenerator
from tests.generator.http.server import RunningServer
from tests.support.forward_proxy import TLS_DIR, RunningProxy, run_forward_proxy, serve_https

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_BUNDLE = str(TLS_DIR / "ca.pem")


@pytest.fixture
def proxy() -> Iterator[RunningProxy]:
    """A forwarding proxy on 127.0.0.1 that records what passes through it."""
    with run_forward_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def https_url() -> Iterator[str]:
    """An HTTPS chat server whose certificate only the test CA vouches for."""
    with serve_https() as url:
        yield url


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no proxy variables (many machines set NO_PROXY=127.0.0.1)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)  # urllib ignores HTTP_PROXY under CGI
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def chat_endpoint(url: str, **kwargs: Any) -> HTTPGenerator:
    return HTTPGenerator.for_json_endpoint(
        f"{url}/v1/chat/completions",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        **kwargs,
    )


def openai_endpoint(url: str, **kwargs: Any) -> OpenAIGenerator:
    return OpenAIGenerator(model="m", api_base=f"{url}/v1", **kwargs)


Build = Callable[..., WiredGenerator]


@pytest.fixture(params=[openai_endpoint, chat_endpoint], ids=["openai!", "http!"])
def build(request: pytest.FixtureRequest) -> Build:
    """Builds a generator for a server's base URL, on each provider that sends over the wire."""
    built: Build = request.param
    return built


async def test_proxy_attribute_sends_the_request_through_the_proxy(
    build: Build, server: RunningServer, proxy: RunningProxy
) -> None:
    generator = build(server.url, proxy=proxy.url)

    chat = await generator.chat("through Burp")

    assert chat.content == "You said: through Burp"
    assert proxy.log.requests == [("POST", f"{server.url}/v1/chat/completions")]
    assert len(server.state.requests) == 1


async def test_proxy_and_verify_survive_the_identifier(
    build: Build, server: RunningServer, proxy: RunningProxy
) -> None:
    identifier = build(server.url, proxy=proxy.url, verify=False).to_identifier()
    assert f",proxy={proxy.url}" in identifier
    assert ",verify=False" in identifier

    rebuilt = jib.get_generator(identifier)
    assert isinstance(rebuilt, WiredGenerator)
    assert (rebuilt.proxy, rebuilt.verify) == (proxy.url, False)
    assert (await rebuilt.chat("again")).content == "You said: again"
    assert len(proxy.log.requests) == 1


async def test_http_proxy_from_the_environment_is_used(
    build: Build, server: RunningServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    chat = await build(server.url).chat("from the environment")

    assert chat.content == "You said: from the environment"
    assert proxy.log.requests == [("POST", f"{server.url}/v1/chat/completions")]


async def test_no_proxy_sends_matching_hosts_directly(
    build: Build, server: RunningServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")

    chat = await build(server.url).chat("direct")

    assert chat.content == "You said: direct"
    assert proxy.log.requests == []
    assert len(server.state.requests) == 1


async def test_proxy_attribute_wins_over_the_environment(
    build: Build,
    server: RunningServer,
    proxy: RunningProxy,
    closed_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", closed_url)  # would fail: nothing listens there

    chat = await build(server.url, proxy=proxy.url).chat("mine")

    assert chat.content == "You said: mine"
    assert len(proxy.log.requests) == 1


async def test_a_proxy_that_is_down_is_a_connection_error(
    build: Build, server: RunningServer, closed_url: str
) -> None:
    generator = build(server.url, proxy=closed_url, max_retries=0, api_key="sk-proxy-1")

    chat = await generator.chat("x").run(on_failed="include")

    assert isinstance(chat.error, ProviderConnectionError)
    assert "sk-proxy-1" not in str(chat.error)
    assert server.state.requests == []


async def test_cross_origin_redirect_through_the_proxy_still_drops_credentials(
    server: RunningServer, other_server: RunningServer, proxy: RunningProxy
) -> None:
    # A 302 continues as a GET without the body (a 307 would carry the body along, which jib
    # refuses across origins: see tests/security/test_secrets.py).
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/redirect?to={other_server.url}/headers&status=302",
        request_body={"q": "$content"},
        response={"content_path": "$.headers"},
        api_key="sk-redirect-secret",
        auth={"format": "Bearer {api_key}"},
        proxy=proxy.url,
    )

    received = json.loads((await generator.chat("x")).content)

    assert "authorization" not in received
    assert [target for _, target in proxy.log.requests] == [
        f"{server.url}/redirect?to={other_server.url}/headers&status=302",
        f"{other_server.url}/headers",
    ]
    assert proxy.log.headers[0]["authorization"] == "Bearer sk-redirect-secret"
    assert "authorization" not in proxy.log.headers[1]


async def test_size_cap_holds_through_the_proxy(server: RunningServer, proxy: RunningProxy) -> None:
    generator = HTTPGenerator.for_text_endpoint(
        f"{server.url}/big?n=50000", max_response_bytes=1000, proxy=proxy.url
    )

    completion = await generator.complete("x").run(on_failed="include")

    assert isinstance(completion.error, ProcessingError)
    assert "1000" in str(completion.error)
    assert len(proxy.log.requests) == 1


async def test_logs_through_the_proxy_hold_no_key(
    server: RunningServer, proxy: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    generator = HTTPGenerator.for_json_endpoint(
        f"{server.url}/v1/chat/completions?key={{{{ api_key }}}}",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        api_key="sk-logged-secret-42",
        proxy=proxy.url,
    )

    assert (await generator.chat("x")).content == "You said: x"

    assert proxy.log.requests[0][1].endswith("?key=sk-logged-secret-42")  # it was sent
    assert "sk-logged-secret-42" not in caplog.text


# -- TLS verification ----------------------------------------------------------------------------


async def test_an_unknown_certificate_is_refused_by_default(build: Build, https_url: str) -> None:
    chat = await build(https_url, max_retries=0).chat("x").run(on_failed="include")

    assert isinstance(chat.error, ProviderConnectionError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(chat.error)


async def test_verify_false_accepts_any_certificate(build: Build, https_url: str) -> None:
    generator = jib.get_generator(build(https_url).to_identifier() + ",verify=false")

    assert (await generator.chat("insecure")).content == "TLS: insecure"


async def test_verify_with_a_ca_bundle_trusts_that_ca(build: Build, https_url: str) -> None:
    generator = build(https_url, verify=CA_BUNDLE)

    assert (await generator.chat("trusted")).content == "TLS: trusted"


async def test_ssl_cert_file_from_the_environment_is_trusted(
    build: Build, https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", CA_BUNDLE)

    assert (await build(https_url).chat("env CA")).content == "TLS: env CA"


async def test_https_goes_through_the_proxy_as_a_connect_tunnel(
    build: Build, https_url: str, proxy: RunningProxy
) -> None:
    generator = build(https_url, proxy=proxy.url, verify=CA_BUNDLE)

    assert (await generator.chat("tunnelled")).content == "TLS: tunnelled"
    assert proxy.log.requests == [("CONNECT", https_url.removeprefix("https://"))]


async def test_a_missing_ca_bundle_is_a_clear_error(
    build: Build, https_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.pem"
    chat = await build(https_url, verify=str(missing)).chat("x").run(on_failed="include")

    assert isinstance(chat.error, InvalidGeneratorError)
    assert f"verify='{missing}': no such CA bundle file" in str(chat.error)


async def test_a_ca_bundle_that_is_not_pem_is_a_clear_error(
    build: Build, https_url: str, tmp_path: Path
) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")

    chat = await build(https_url, verify=str(bogus)).chat("x").run(on_failed="include")

    assert isinstance(chat.error, InvalidGeneratorError)
    assert "cannot be used as a CA bundle" in str(chat.error)


# -- checking the attributes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("false", False), ("False", False), ("no", False), ("0", False), ("true", True)],
)
def test_verify_reads_booleans_written_as_text(text: str, expected: bool) -> None:
    generator = jib.get_generator(f"http!m,verify={text}")
    assert isinstance(generator, HTTPGenerator)
    assert generator.verify is expected


@pytest.mark.parametrize(
    ("proxy_url", "message"),
    [
        ("ftp://127.0.0.1:21", "is not a proxy URL; expected scheme://host:port"),
        ("127.0.0.1:8080", "is not a proxy URL"),
        ("http://127.0.0.1:port", "has an invalid port"),
    ],
)
def test_a_bad_proxy_url_says_what_is_expected(proxy_url: str, message: str) -> None:
    with pytest.raises(InvalidGeneratorError, match="key 'proxy'") as caught:
        jib.get_generator(f"http!m,proxy={proxy_url}")
    assert message in str(caught.value)


def test_a_proxy_with_credentials_is_refused_and_the_password_is_masked() -> None:
    with pytest.raises(ValidationError) as caught:
        HTTPGenerator(model="m", proxy="http://alice:hunter2@127.0.0.1:8080")
    message = caught.value.errors()[0]["msg"]
    assert "proxy=http://***@127.0.0.1… carries credentials" in message
    assert "HTTPS_PROXY=http://user:password@host:port" in message
    assert "hunter2" not in message


def test_an_empty_verify_says_what_is_expected() -> None:
    with pytest.raises(InvalidGeneratorError, match="verify is empty; expected true, false"):
        jib.get_generator("http!m,verify=")
