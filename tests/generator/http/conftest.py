"""Fixtures for the HTTP generator: real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.generator.http.server import RunningServer, serve


@pytest.fixture(scope="session")
def _server_session() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


@pytest.fixture(scope="session")
def _other_server_session() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


@pytest.fixture
def server(_server_session: RunningServer) -> RunningServer:
    """The test server (started once per session), with its memory reset for each test."""
    _server_session.state.reset()
    return _server_session


@pytest.fixture
def other_server(_other_server_session: RunningServer) -> RunningServer:
    """A second server on another port: another origin, for redirect tests."""
    _other_server_session.state.reset()
    return _other_server_session


@pytest.fixture(scope="session")
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # never accepted: the kernel completes handshakes, nobody ever replies
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def closed_url() -> str:
    """A URL where nothing listens: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
