"""Client certificates (mutual TLS): `cert=` and `cert_keyfile=` on every generator that sends over
the wire, against a real TLS server on 127.0.0.1 that requires a certificate from its CA.

The certificates are made for the session with `cryptography` (`tests.support.mtls`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jib
from jib import InvalidGeneratorError, ProviderConnectionError, UntrustedIdentifierError
from jib.generator._wired import WiredGenerator
from jib.generator.http import HTTPGenerator
from jib.generator.openai import OpenAIGenerator
from jib.trust import TrustPolicy
from tests.support.forward_proxy import RunningProxy, run_forward_proxy
from tests.support.mtls import CertificateFiles, make_certificates, serve_mtls


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A CA, a server certificate, client certificates (see `tests.support.mtls`)."""
    return make_certificates(tmp_path_factory.mktemp("mtls"))


@pytest.fixture(scope="module")
def mtls_url(certificates: CertificateFiles) -> Iterator[str]:
    """A chat server that answers only clients with a certificate from the test CA."""
    with serve_mtls(certificates) as url:
        yield url


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


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


@pytest.fixture(params=[chat_endpoint, openai_endpoint], ids=["http!", "openai!"])
def build(request: pytest.FixtureRequest) -> Build:
    built: Build = request.param
    return built


async def test_a_client_certificate_with_its_key_in_one_file_is_answered(
    build: Build, mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = build(mtls_url, verify=str(certificates.ca), cert=str(certificates.client))

    chat = await generator.chat("hello")

    assert chat.content == "mTLS jib-client: hello"


async def test_a_client_certificate_and_its_key_in_two_files_are_answered(
    build: Build, mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = build(
        mtls_url,
        verify=str(certificates.ca),
        cert=str(certificates.client_cert),
        cert_keyfile=str(certificates.client_key),
    )

    assert (await generator.chat("two files")).content == "mTLS jib-client: two files"


async def test_without_a_client_certificate_the_server_refuses_and_the_error_says_so(
    build: Build, mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = build(mtls_url, verify=str(certificates.ca), max_retries=3, retry_backoff=0.01)

    chat = await generator.chat("no certificate").run(on_failed="include")

    assert isinstance(chat.error, ProviderConnectionError)
    message = str(chat.error)
    assert "client certificate" in message
    assert "cert=" in message
    assert chat.error.retryable is False
    assert chat.attempts == 1  # a missing certificate is not retried


async def test_a_certificate_from_another_ca_is_refused(
    build: Build, mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = build(
        mtls_url, verify=str(certificates.ca), cert=str(certificates.stranger), max_retries=0
    )

    chat = await generator.chat("stranger").run(on_failed="include")

    assert isinstance(chat.error, ProviderConnectionError)
    assert "127.0.0.1" in str(chat.error)


async def test_the_client_certificate_goes_through_a_proxy_tunnel(
    build: Build, mtls_url: str, certificates: CertificateFiles
) -> None:
    proxy: RunningProxy
    with run_forward_proxy() as proxy:
        generator = build(
            mtls_url,
            verify=str(certificates.ca),
            cert=str(certificates.client),
            proxy=proxy.url,
        )
        chat = await generator.chat("tunnelled")
        await generator.aclose()

    assert chat.content == "mTLS jib-client: tunnelled"
    assert [method for method, _ in proxy.log.requests] == ["CONNECT"]


async def test_verify_false_still_presents_the_certificate(
    mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = chat_endpoint(mtls_url, verify=False, cert=str(certificates.client))

    assert (await generator.chat("unverified")).content == "mTLS jib-client: unverified"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (lambda c: {"cert": str(c.client.parent / "missing.pem")}, "no such file"),
        (lambda c: {"cert": str(c.client_cert)}, "holds no private key"),
        (
            lambda c: {"cert": str(c.client_cert), "cert_keyfile": str(c.stranger)},
            "does not match",
        ),
        (
            lambda c: {"cert": str(c.client_cert), "cert_keyfile": str(c.client_key_encrypted)},
            "encrypted",
        ),
        (lambda c: {"cert_keyfile": str(c.client_key)}, "cert_keyfile is set without cert"),
        (lambda c: {"cert": str(c.ca.parent)}, "no such file"),
    ],
    ids=["missing", "no-key", "wrong-key", "encrypted-key", "key-only", "a-folder"],
)
async def test_an_unusable_client_certificate_is_one_clear_error(
    mtls_url: str,
    certificates: CertificateFiles,
    files: Callable[[CertificateFiles], dict[str, str]],
    expected: str,
) -> None:
    generator = chat_endpoint(mtls_url, verify=str(certificates.ca), **files(certificates))

    chat = await generator.chat("x").run(on_failed="include")

    assert isinstance(chat.error, InvalidGeneratorError)
    assert expected in str(chat.error)
    assert "correct horse" not in str(chat.error)


async def test_cert_paths_round_trip_through_the_identifier(
    mtls_url: str, certificates: CertificateFiles
) -> None:
    generator = chat_endpoint(
        mtls_url,
        verify=str(certificates.ca),
        cert=str(certificates.client_cert),
        cert_keyfile=str(certificates.client_key),
    )
    identifier = generator.to_identifier()
    assert f",cert={certificates.client_cert}" in identifier
    assert f",cert_keyfile={certificates.client_key}" in identifier

    rebuilt = jib.get_generator(identifier)

    assert rebuilt == generator
    assert (await rebuilt.chat("rebuilt")).content == "mTLS jib-client: rebuilt"


def test_a_home_relative_cert_path_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")

    generator = chat_endpoint("https://127.0.0.1:1", cert="~/client.pem", cert_keyfile=" ")

    assert generator.cert == "/home/someone/client.pem"
    assert generator.cert_keyfile is None


@pytest.mark.parametrize("option", ["cert", "cert_keyfile"])
def test_data_may_not_set_a_client_certificate_unless_allowed(
    option: str, certificates: CertificateFiles
) -> None:
    identifier = chat_endpoint(
        "http://127.0.0.1:9/x", **{"cert": str(certificates.client), option: str(Path("/k.pem"))}
    ).to_identifier()

    with pytest.raises(UntrustedIdentifierError, match=f"it sets {option},"):
        jib.get_generator(identifier, trusted=TrustPolicy())

    allowed = TrustPolicy(allow_options={"cert", "cert_keyfile"})
    assert isinstance(jib.get_generator(identifier, trusted=allowed), HTTPGenerator)
