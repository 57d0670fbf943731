"""Fixtures for the store tests: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jib.storage import ChatStore, open_store
from tests.storage.postgres import empty_postgres, postgres_url

__all__ = ["postgres_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a new SQLite file, or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jib.db'}"
    return empty_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[ChatStore]:
    """An open, empty store (SQLite or PostgreSQL)."""
    with open_store(store_url) as opened:
        yield opened
