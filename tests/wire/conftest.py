"""Fixtures for the wire's tests: the HTTP test servers of the `http!` tests."""

from tests.generator.http.conftest import (
    _other_server_session,
    _server_session,
    closed_url,
    other_server,
    server,
    silent_url,
)

__all__ = [
    "_other_server_session",
    "_server_session",
    "closed_url",
    "other_server",
    "server",
    "silent_url",
]
