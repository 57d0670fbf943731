"""The response cache's tables and the plain records that go in and out of them (see
`jib.storage._response_cache` for what they hold and why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

__all__ = [
    "CachedAnswer",
    "NewEntry",
    "ResponseCacheStats",
    "entries",
    "response_cache_tables",
    "stats",
]

response_cache_tables = MetaData()

entries = Table(
    "jib_response_cache",
    response_cache_tables,
    Column("key", String(32), primary_key=True),
    Column("sample", Integer, primary_key=True),
    Column("generator", Text, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("answer", Text, nullable=False),
    Column("origin_chat", String(64)),
    Column("run", Text),
    Column("created_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    # No index but the primary key's: every index is paid for by every answer written, and
    # `jib cache` reads and prunes (by age, generator or run) are rare enough to scan. (Caches
    # made before keep their index of `created_at`.)
)

stats = Table(
    "jib_response_cache_stats",
    response_cache_tables,
    Column("run", Text, primary_key=True),
    Column("generator", Text, primary_key=True),
    Column("hits", Integer, nullable=False, default=0),
    Column("misses", Integer, nullable=False, default=0),
    Column("saved_usd", Float, nullable=False, default=0.0),
)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One kept answer: its JSON (`answer`), the chat it was first made for, and when."""

    answer: dict[str, Any]
    origin_chat: str | None
    created_at: float


@dataclass(slots=True)
class NewEntry:
    """An answer waiting to be written (its chat's id is filled in once the record exists)."""

    key: str
    sample: int
    generator: str
    kind: str
    answer: bytes
    origin_chat: str | None = None


@dataclass(slots=True)
class ResponseCacheStats:
    """Counts of one generator in one run: hits, misses and the cost the hits saved (USD)."""

    hits: int = 0
    misses: int = 0
    saved_usd: float = 0.0
