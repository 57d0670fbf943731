"""A small forwarding HTTP proxy on 127.0.0.1, as Burp or mitmproxy sit in front of a target.

`http://` requests arrive in absolute form (`POST http://127.0.0.1:PORT/path HTTP/1.1`) and are
forwarded with `http.client`; `https://` requests arrive as `CONNECT host:port` and are tunnelled
byte for byte (the TLS stays end to end). The proxy records what passed through it, so a test can
count the requests that went through the proxy and not around it.

Also here: `serve_https`, a TLS server on 127.0.0.1 whose certificate is signed by the test CA in
`tests/support/tls/` (`ca.pem`; made with `openssl ca`, valid 2020-2120, for 127.0.0.1 and
localhost), answering every POST in the OpenAI chat shape.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["TLS_DIR", "ProxyLog", "RunningProxy", "run_forward_proxy", "serve_https"]

TLS_DIR = Path(__file__).resolve().parent / "tls"
"""The test CA (`ca.pem`) and the server's certificate and key."""

# Hop-by-hop headers are for the proxy, never forwarded (RFC 9110, 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass
class ProxyLog:
    """What went through the proxy: `(method, target)` per request, and the headers seen."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, target: str, headers: dict[str, str]) -> None:
        """Record one request."""
        with self.lock:
            self.requests.append((method, target))
            self.headers.append(headers)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, log: ProxyLog) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.log = log

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-tunnel is not an error of the test


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _forward(self) -> None:
        self.server.log.add(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
        )
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute-form http:// request expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except OSError as exc:
            self.send_error(502, f"upstream failed: {exc}")
            return
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    def do_CONNECT(self) -> None:
        self.server.log.add("CONNECT", self.path, self._headers())
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except (OSError, ValueError) as exc:
            self.send_error(502, f"cannot connect: {exc}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        client = self.connection
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 30)
                if not readable:
                    return
                for source in readable:
                    chunk = source.recv(65536)
                    if not chunk:
                        return
                    (upstream if source is client else client).sendall(chunk)
        except OSError:
            return
        finally:
            upstream.close()
            self.close_connection = True


@dataclass
class RunningProxy:
    """A proxy running in a background thread."""

    url: str
    log: ProxyLog


@contextmanager
def run_forward_proxy() -> Iterator[RunningProxy]:
    """Start the proxy on a free port of 127.0.0.1; stop it on exit."""
    log = ProxyLog()
    server = _ProxyServer(log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningProxy(f"http://127.0.0.1:{server.server_address[1]}", log)
    finally:
        server.shutdown()
        server.server_close()


class _ChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        content = payload.get("messages", [{}])[-1].get("content", "")
        body = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": f"TLS: {content}"}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that refuse the certificate hang up mid-handshake: that is the test


@contextmanager
def serve_https() -> Iterator[str]:
    """An HTTPS chat server on 127.0.0.1 (certificate from the test CA); yields its base URL."""
    server = _TLSServer(("127.0.0.1", 0), _ChatHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    # Handshakes happen in the handler threads, so one client hanging up mid-handshake does not
    # stop the accept loop.
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
