"""How a generator reaches the network: proxy, TLS verification, size and redirect bounds.

Proxies: the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` apply (and
`SSL_CERT_FILE`/`SSL_CERT_DIR`), as in curl; a generator's own `proxy` replaces them for every
request it sends. A proxy given as an attribute may not carry credentials: attributes are written
into identifiers and stored with every chat, while the environment is not.

Client certificates (mutual TLS): `cert` and `cert_keyfile` (PEM paths, as curl's `--cert` and
`--key`) are presented to every server that asks for one, by every transport on the wire.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "CertPath",
    "ProxyURL",
    "Verify",
    "WireSettings",
    "check_proxy_url",
    "environment_proxies",
    "read_cert_path",
    "read_verify",
    "tls_context",
    "unverified_context",
]

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The largest answer read by default (16 MiB): a body after decompression, or one stream line."""
DEFAULT_MAX_REDIRECTS = 5
"""Redirects followed per request by default."""

_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_FALSE = frozenset({"false", "0", "no", "off"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


@dataclass(frozen=True, slots=True)
class WireSettings:
    """What a `Wire` is made for; a generator whose settings change gets a new one.

    Attributes:
        proxy: send every request through this proxy instead of the environment's.
        verify: verify TLS certificates, don't, or trust the CA bundle at this path.
        max_response_bytes: the largest body (decompressed) or stream line read.
        max_redirects: redirects followed per request (0: none; a redirect is then the answer).
        cookies: keep cookies a server sets, per client (per event loop), as a browser would.
        cert: the client certificate to present (a PEM file; with its key unless `cert_keyfile`).
        cert_keyfile: the client certificate's private key (a PEM file), when not in `cert`.
    """

    proxy: str | None = None
    verify: bool | str = True
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    cookies: bool = False
    cert: str | None = None
    cert_keyfile: str | None = None

    @property
    def system_tls(self) -> bool:
        """Whether TLS is the default: the system's certificates, no client certificate. A
        transport then makes its context at the first https request, since loading the
        certificates costs more CPU than a short run's requests to a local http:// server;
        any other setting is made at once, so a bad CA bundle or client certificate fails the
        first request whatever its URL."""
        return self.verify is True and self.cert is None and self.cert_keyfile is None

    def tls(self) -> ssl.SSLContext | bool:
        """The TLS setting of a client made for these settings (see `tls_context`): every
        transport on the wire (HTTP or WebSocket) takes it from here."""
        return tls_context(self.verify, self.cert, self.cert_keyfile)


def check_proxy_url(value: Any) -> Any:
    """A `proxy` attribute checked: `None`, `""` (no proxy) or `scheme://host:port`.

    Raises:
        InvalidGeneratorError: not a proxy URL, or one carrying credentials (the message masks
            them); raised as is, so pydantic does not quote the value.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidGeneratorError(f"proxy must be a URL string, not {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.username is not None or parts.password is not None:
        shown = f"{parts.scheme}://***@{parts.hostname or ''}"
        raise InvalidGeneratorError(
            f"proxy={shown}… carries credentials, which would be written into the identifier "
            "and stored with every chat; set them in the environment instead "
            "(HTTPS_PROXY=http://user:password@host:port)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as exc:
        raise InvalidGeneratorError(f"proxy={value!r} has an invalid port: {exc}") from None
    if parts.scheme.lower() not in _PROXY_SCHEMES or not parts.hostname:
        raise InvalidGeneratorError(
            f"proxy={value!r} is not a proxy URL; expected scheme://host:port with scheme "
            f"{', '.join(_PROXY_SCHEMES)} (e.g. http://127.0.0.1:8080 for Burp or mitmproxy)"
        )
    return value.strip()


def read_verify(value: Any) -> Any:
    """A `verify` attribute read: `True`/`False` (also as text: true/false, yes/no, 1/0, on/off)
    or the path of a CA bundle (PEM) to trust instead of the system's certificates."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _FALSE:
            return False
        if word in _TRUE:
            return True
        if not word:
            raise InvalidGeneratorError(
                "verify is empty; expected true, false or the path of a CA bundle (PEM)"
            )
        return os.path.expanduser(value.strip())
    return value


def read_cert_path(value: Any) -> Any:
    """A `cert` or `cert_keyfile` attribute read: `None` (or empty: none) or a path, `~` expanded.
    Whether the file is there and usable is checked when a client is made (`tls_context`)."""
    if value is None:
        return None
    if isinstance(value, str):
        return os.path.expanduser(value.strip()) if value.strip() else None
    if isinstance(value, os.PathLike):
        return os.path.expanduser(os.fspath(value))
    raise InvalidGeneratorError(
        f"a client certificate must be given as a file path, not {type(value).__name__}"
    )


ProxyURL = Annotated[str | None, BeforeValidator(check_proxy_url)]
"""The type of the `proxy` attribute: a proxy URL without credentials, or `None`."""
Verify = Annotated[bool | str, BeforeValidator(read_verify)]
"""The type of the `verify` attribute: verify TLS certificates, don't, or trust this CA bundle."""
CertPath = Annotated[str | None, BeforeValidator(read_cert_path)]
"""The type of the `cert` and `cert_keyfile` attributes: the path of a PEM file, or `None`."""


def environment_proxies() -> bool:
    """Whether the environment names a proxy (any case, as httpx and curl read them)."""
    return any(
        value.strip() for name, value in os.environ.items() if name.lower() in _PROXY_VARIABLES
    )


def tls_context(
    verify: bool | str, cert: str | None = None, cert_keyfile: str | None = None
) -> ssl.SSLContext | bool:
    """The TLS setting both clients use: a context trusting the system's certificates (and
    `SSL_CERT_FILE`/`SSL_CERT_DIR`), `False` for no verification, or a context trusting the CA
    bundle (a PEM file, or a folder of them) at the path `verify` names; with `cert`, the context
    also presents that client certificate (its key in `cert`, or in `cert_keyfile`).

    Raises:
        InvalidGeneratorError: there is no such file or folder, it holds no usable
            certificate, or the client certificate or its key cannot be used (missing, not
            PEM, not matching, or encrypted: jib never prompts for a password).
    """

    if cert is None and cert_keyfile is not None:
        raise InvalidGeneratorError(
            "cert_keyfile is set without cert: give the client certificate as cert=PATH (a PEM "
            "file) and its private key as cert_keyfile=PATH"
        )
    context = _verifying_context(verify)
    if cert is None:
        return context
    if context is False:
        context = unverified_context()
    _load_client_certificate(context, cert, cert_keyfile)
    return context


def unverified_context() -> ssl.SSLContext:
    """A TLS context that checks neither the server's certificate nor its name (`verify=false`),
    for a client certificate to be loaded into, or a client that needs a context object."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _verifying_context(verify: bool | str) -> ssl.SSLContext | Literal[False]:
    import ssl

    if verify is False:
        return False
    if verify is True:
        return ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or None,
            capath=os.environ.get("SSL_CERT_DIR") or None,
        )
    is_folder = os.path.isdir(verify)
    if not is_folder and not os.path.isfile(verify):
        raise InvalidGeneratorError(
            f"verify={verify!r}: no such CA bundle file; expected true, false or the path "
            "of a PEM file"
        )
    try:
        if is_folder:
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidGeneratorError(
            f"verify={verify!r} cannot be used as a CA bundle: {exc}"
        ) from exc


class _EncryptedKeyError(Exception):
    """Raised from the password callback: jib never asks for a key's password."""


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal, hanging a batch run.
    raise _EncryptedKeyError


def _load_client_certificate(context: ssl.SSLContext, cert: str, cert_keyfile: str | None) -> None:
    for name, path in (("cert", cert), ("cert_keyfile", cert_keyfile)):
        if path is not None and not os.path.isfile(path):
            raise InvalidGeneratorError(
                f"{name}={path!r}: no such file; expected the path of a PEM file"
            )
    where = f"cert={cert!r}" + ("" if cert_keyfile is None else f", cert_keyfile={cert_keyfile!r}")
    try:
        context.load_cert_chain(cert, cert_keyfile, password=_no_password)
    except _EncryptedKeyError:
        raise InvalidGeneratorError(
            f"{where}: the private key is encrypted, and jib does not ask for passwords; "
            "give it a key without a password (openssl pkey -in KEY.pem -out PLAIN-KEY.pem)"
        ) from None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        hint = (
            "it holds no private key: give the key as cert_keyfile=PATH, or both in one PEM file"
            if cert_keyfile is None
            else "the key does not match the certificate, or either is not PEM"
        )
        raise InvalidGeneratorError(
            f"{where} cannot be used as a client certificate ({hint}): {exc}"
        ) from exc
