"""A TLS server on 127.0.0.1 that requires a client certificate (mutual TLS), and the PEM files
it needs, made for each test session with `cryptography` (nothing downloaded, nothing checked in).

`make_certificates(folder)` writes a CA, a server certificate for 127.0.0.1 and localhost signed
by it, a client certificate signed by it (as one PEM with its key, and as separate certificate
and key files), an encrypted copy of the client key, and a client certificate from another CA
the server does not trust. `serve_mtls(files)` answers every POST in the OpenAI chat shape,
naming the client certificate's common name: `mTLS <name>: <last message>`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["CertificateFiles", "make_certificates", "serve_mtls"]


@dataclass(frozen=True)
class CertificateFiles:
    """The PEM files of one mutual-TLS set-up."""

    ca: Path
    server: Path
    server_key: Path
    client: Path  # certificate and key in one file
    client_cert: Path  # certificate only
    client_key: Path  # key only
    client_key_encrypted: Path
    stranger: Path  # certificate and key from a CA the server does not trust


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, server: bool = False
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(certificate.public_bytes(Encoding.PEM))


def _key_pem(key: Any, password: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    encryption: Any = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def make_certificates(folder: Path) -> CertificateFiles:
    """Write a CA, a server and client certificates (see the module) into `folder`."""
    ca_key, other_ca_key = _key(), _key()
    ca = _certificate("jib test CA", ca_key, "jib test CA", ca_key, ca=True)
    server_key, client_key, stranger_key = _key(), _key(), _key()
    server = _certificate("127.0.0.1", server_key, "jib test CA", ca_key, ca=False, server=True)
    client = _certificate("jib-client", client_key, "jib test CA", ca_key, ca=False)
    stranger = _certificate("stranger", stranger_key, "other CA", other_ca_key, ca=False)
    files = CertificateFiles(
        ca=folder / "ca.pem",
        server=folder / "server.pem",
        server_key=folder / "server.key",
        client=folder / "client.pem",
        client_cert=folder / "client-cert.pem",
        client_key=folder / "client-key.pem",
        client_key_encrypted=folder / "client-key-encrypted.pem",
        stranger=folder / "stranger.pem",
    )
    files.ca.write_bytes(_pem(ca))
    files.server.write_bytes(_pem(server))
    files.server_key.write_bytes(_key_pem(server_key))
    files.client.write_bytes(_pem(client) + _key_pem(client_key))
    files.client_cert.write_bytes(_pem(client))
    files.client_key.write_bytes(_key_pem(client_key))
    files.client_key_encrypted.write_bytes(_key_pem(client_key, b"correct horse"))
    files.stranger.write_bytes(_pem(stranger) + _key_pem(stranger_key))
    return files


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        content = payload.get("messages", [{}])[-1].get("content", "")
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else {}
        subject = dict(item for part in (peer or {}).get("subject", ()) for item in part)
        answer = f"mTLS {subject.get('commonName', '?')}: {content}"
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client without a certificate is refused in the handshake: that is the test. Its
        # request is read and dropped before closing (as nginx's lingering close does):
        # closing with it unread would reset the connection, and the client might then see the
        # reset instead of the TLS alert saying why.
        request.settimeout(2)
        with contextlib.suppress(OSError):
            while socket.socket.recv(request, 65536):
                pass


@contextmanager
def serve_mtls(files: CertificateFiles) -> Iterator[str]:
    """An HTTPS chat server on 127.0.0.1 that requires a client certificate from the test CA;
    yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server, files.server_key)
    context.load_verify_locations(files.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    # Handshakes happen in the handler threads, so a refused client does not stop the loop.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
