"""Fixtures for the WebSocket generator: a real WebSocket chatbot on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.generator.ws.server import RunningWSServer, serve_ws


@pytest.fixture(scope="session")
def _ws_server_session() -> Iterator[RunningWSServer]:
    with serve_ws() as running:
        yield running


@pytest.fixture(scope="session")
def _other_ws_server_session() -> Iterator[RunningWSServer]:
    with serve_ws() as running:
        yield running


@pytest.fixture
def ws_server(_ws_server_session: RunningWSServer) -> RunningWSServer:
    """The chatbot (started once per session), its memory reset for each test."""
    _ws_server_session.state.reset()
    return _ws_server_session


@pytest.fixture
def other_ws_server(_other_ws_server_session: RunningWSServer) -> RunningWSServer:
    """A second chatbot on another port: another origin, for redirect tests."""
    _other_ws_server_session.state.reset()
    return _other_ws_server_session
