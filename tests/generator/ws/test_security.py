"""`ws!` keeps `http!`'s rules: trust for identifiers read from data, secrets out of identifiers,
reprs, records and errors, and the wire's redirect, TLS and proxy rules for the handshake."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

import jib
from jib.errors import (
    AuthenticationError,
    InvalidGeneratorError,
    ProcessingError,
    ProviderConnectionError,
    ProviderError,
    UntrustedIdentifierError,
)
from jib.generator.ws import WSGenerator, WSSpec
from jib.trust import TrustPolicy
from tests.generator.ws.server import SECRET_TOKEN, RunningWSServer, serve_ws
from tests.support.forward_proxy import TLS_DIR, run_forward_proxy
from tests.support.mtls import make_certificates

MARKER_RESPONSE = {"skip": {"regex": r"^\.\.\.$"}, "done": {"marker": "[END]"}}


def auth_spec(url: str) -> dict[str, Any]:
    return {
        "request": {
            "url": url,
            "headers": {"Authorization": "Bearer {{ api_key }}"},
            "message": "{{ content }}",
        },
        "response": MARKER_RESPONSE,
    }


def stored_identifier(url: str, *, api_key: str = "env:OPENAI_API_KEY") -> str:
    """A `ws!` identifier as a stored chat or a JSONL file would hold it."""
    spec = WSSpec.model_validate(auth_spec(url)).to_base64()
    return f"ws!bot,api_key={api_key},spec={spec}"


# -- trust ------------------------------------------------------------------------------------


def test_stored_identifier_may_not_send_your_key_to_a_host_you_did_not_allow() -> None:
    identifier = stored_identifier("wss://bot.example.com/chat")

    with pytest.raises(UntrustedIdentifierError) as info:
        jib.get_generator(identifier, trusted=TrustPolicy())

    message = str(info.value)
    assert "it sends the key in environment variable OPENAI_API_KEY to bot.example.com" in message
    assert "--allow-host bot.example.com" in message


def test_stored_identifier_reaches_a_host_the_user_allowed_or_loopback() -> None:
    allowed = jib.get_generator(
        stored_identifier("wss://bot.example.com/chat"),
        trusted=TrustPolicy(allow_hosts={"bot.example.com"}),
    )
    loopback = jib.get_generator(stored_identifier("ws://127.0.0.1:9/chat"), trusted=TrustPolicy())

    assert isinstance(allowed, WSGenerator)
    assert isinstance(loopback, WSGenerator)


def test_stored_identifier_whose_host_is_a_template_needs_any_host() -> None:
    identifier = stored_identifier("wss://{{ state.host }}/chat")

    with pytest.raises(UntrustedIdentifierError, match="not known until a template renders it"):
        jib.get_generator(identifier, trusted=TrustPolicy())


async def test_stored_chat_with_a_ws_generator_is_checked_when_reloaded(
    ws_server: RunningWSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_TOKEN)
    generator = jib.get_generator(stored_identifier(f"{ws_server.url}/auth"))
    chat = await generator.chat("hello")
    stored = chat.to_json().replace("127.0.0.1", "bot.example.com")
    stored = stored.replace(
        WSSpec.model_validate(auth_spec(f"{ws_server.url}/auth")).to_base64(),
        WSSpec.model_validate(auth_spec("wss://bot.example.com/auth")).to_base64(),
    )

    assert chat.content == "You said: hello"
    with pytest.raises(UntrustedIdentifierError, match=r"bot\.example\.com"):
        jib.Chat.from_json(stored)
    reloaded = jib.Chat.from_json(chat.to_json())
    assert isinstance(reloaded.generator, WSGenerator)


# -- secrets ----------------------------------------------------------------------------------


async def test_secrets_in_headers_stay_out_of_identifiers_reprs_records_and_errors(
    ws_server: RunningWSServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = WSGenerator(model="bot", api_key=SECRET_TOKEN, spec=auth_spec(f"{ws_server.url}/auth"))
    bad_key = "wr0ng-key-that-is-secret-99"
    bad = WSGenerator(model="bot", api_key=bad_key, spec=auth_spec(f"{ws_server.url}/auth"))

    chat = await good.chat("hi")
    failed = await bad.chat("hi").run(on_failed="include")

    assert chat.content == "You said: hi"
    assert ws_server.state.handshakes[0]["headers"]["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert isinstance(failed.error, AuthenticationError)
    assert failed.error.status_code == 401
    assert failed.attempts == 1  # a refused handshake is not retried
    texts = [good.to_identifier(), repr(good), str(good), chat.to_json()]
    texts += [bad.to_identifier(), repr(bad), str(failed.error), failed.to_json(), caplog.text]
    for text in texts:
        assert SECRET_TOKEN not in text
        assert bad_key not in text


async def test_secrets_stay_out_of_connection_errors() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    key = "sk-in-the-url-query-123456"
    generator = WSGenerator(
        model="bot",
        api_key=key,
        max_retries=0,
        spec={
            "request": {"url": f"ws://127.0.0.1:{port}/chat?key={{{{ api_key }}}}", "message": "x"},
            "response": {"idle_timeout": 1},
        },
    )

    chat = await generator.chat("hi").run(on_failed="include")

    assert isinstance(chat.error, ProviderConnectionError)
    assert f"ws://127.0.0.1:{port}" in str(chat.error)
    assert key not in str(chat.error)
    assert key not in repr(chat.error.__cause__)


# -- the wire's rules -------------------------------------------------------------------------


async def test_redirect_within_the_origin_keeps_the_credentials(
    ws_server: RunningWSServer,
) -> None:
    url = f"{ws_server.url}/redirect?to=/auth"
    generator = WSGenerator(model="bot", api_key=SECRET_TOKEN, spec=auth_spec(url))

    assert (await generator.chat("moved")).content == "You said: moved"


async def test_redirect_to_another_origin_drops_the_credentials(
    ws_server: RunningWSServer, other_ws_server: RunningWSServer
) -> None:
    url = f"{ws_server.url}/redirect?to={other_ws_server.url}/auth"
    generator = WSGenerator(model="bot", api_key=SECRET_TOKEN, spec=auth_spec(url))

    chat = await generator.chat("moved").run(on_failed="include")

    assert isinstance(chat.error, AuthenticationError)  # the other origin got no token
    seen = other_ws_server.state.handshakes
    assert len(seen) == 1
    assert "Authorization" not in seen[0]["headers"]


async def test_no_redirects_followed_with_max_redirects_zero(ws_server: RunningWSServer) -> None:
    url = f"{ws_server.url}/redirect?to=/auth"
    generator = WSGenerator(model="bot", api_key=SECRET_TOKEN, spec=auth_spec(url), max_redirects=0)

    chat = await generator.chat("moved").run(on_failed="include")

    assert isinstance(chat.error, ProviderError)
    assert chat.error.status_code == 307
    assert "redirected the WebSocket handshake; max_redirects=0 are followed" in str(chat.error)


async def test_redirect_to_another_scheme_is_refused(ws_server: RunningWSServer) -> None:
    url = f"{ws_server.url}/redirect?to=ftp://127.0.0.1/x"
    generator = WSGenerator(model="bot", api_key="k", spec=auth_spec(url), max_retries=0)

    with pytest.raises(ProcessingError, match="the scheme must be ws or wss"):
        await generator.chat("moved").run()


async def test_wss_verifies_certificates_and_trusts_the_ca_given_as_verify() -> None:
    with serve_ws(tls=True) as tls_server:
        url = f"{tls_server.url}/marker"
        spec = {"request": {"url": url, "message": "{{ content }}"}, "response": MARKER_RESPONSE}
        trusting = WSGenerator(model="bot", spec=spec, verify=str(TLS_DIR / "ca.pem"))
        default = WSGenerator(model="bot", spec=spec, max_retries=0)

        answered = await trusting.chat("over TLS")
        refused = await default.chat("over TLS").run(on_failed="include")

    assert answered.content == "You said: over TLS"
    assert isinstance(refused.error, ProviderConnectionError)
    assert "certificate" in str(refused.error).lower()


async def test_wss_with_a_client_certificate_answers_and_without_one_is_refused(
    tmp_path: Path,
) -> None:
    files = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server, files.server_key)
    context.load_verify_locations(files.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    with serve_ws(ssl_context=context) as mtls_server:
        url = f"{mtls_server.url}/marker"
        spec = {"request": {"url": url, "message": "{{ content }}"}, "response": MARKER_RESPONSE}
        common = {"model": "bot", "spec": spec, "verify": str(files.ca), "max_retries": 0}
        with_cert = WSGenerator(**common, cert=str(files.client))
        split_files = WSGenerator(
            **common, cert=str(files.client_cert), cert_keyfile=str(files.client_key)
        )
        without = WSGenerator(**common)

        answered = await with_cert.chat("mutual TLS")
        answered_too = await split_files.chat("mutual TLS")
        refused = await without.chat("mutual TLS").run(on_failed="include")

    assert answered.content == answered_too.content == "You said: mutual TLS"
    # The server's TLS alert is not always what the client reads first (here aiohttp reports the
    # closed connection), so the message may or may not name the certificate.
    assert isinstance(refused.error, ProviderConnectionError)


async def test_wss_goes_through_the_proxy_with_connect() -> None:
    with serve_ws(tls=True) as tls_server, run_forward_proxy() as proxy:
        spec = {
            "request": {"url": f"{tls_server.url}/marker", "message": "{{ content }}"},
            "response": MARKER_RESPONSE,
        }
        generator = WSGenerator(
            model="bot", spec=spec, proxy=proxy.url, verify=str(TLS_DIR / "ca.pem")
        )

        chat = await generator.chat("via the proxy")

    port = tls_server.url.rsplit(":", 1)[1]
    assert chat.content == "You said: via the proxy"
    assert proxy.log.requests == [("CONNECT", f"127.0.0.1:{port}")]


async def test_a_socks_proxy_is_refused_with_a_clear_error(ws_server: RunningWSServer) -> None:
    spec = {
        "request": {"url": f"{ws_server.url}/marker", "message": "{{ content }}"},
        "response": MARKER_RESPONSE,
    }
    generator = WSGenerator(model="bot", spec=spec, proxy="socks5://127.0.0.1:9")

    with pytest.raises(InvalidGeneratorError, match="HTTP proxies only"):
        await generator.chat("hi").run()


def test_hook_is_refused() -> None:
    with pytest.raises(ValueError, match="ws! takes no hook"):
        WSGenerator(model="bot", spec=auth_spec("ws://127.0.0.1:9"), hook=lambda g, r: None)


@pytest.mark.parametrize(("no_proxy", "through_proxy"), [("", True), ("127.0.0.1", False)])
async def test_the_environment_proxy_applies_to_wss_with_no_proxy_honoured(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, through_proxy: bool
) -> None:
    with serve_ws(tls=True) as tls_server, run_forward_proxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        spec = {
            "request": {"url": f"{tls_server.url}/marker", "message": "{{ content }}"},
            "response": MARKER_RESPONSE,
        }
        generator = WSGenerator(model="bot", spec=spec, verify=str(TLS_DIR / "ca.pem"))

        chat = await generator.chat("env proxy")

    assert chat.content == "You said: env proxy"
    assert bool(proxy.log.requests) is through_proxy
