"""The keys a SQLite response cache holds, kept in memory, so that a lookup of keys it does not
hold (every request of a run filling the cache) asks the database nothing.

A lookup by primary key is cheap on its own (microseconds), but it runs once per batch between
the requests' own work, with SQLite's pages and code gone cold: in a real run it costs several
times what it costs in a loop, and it is most of what the cache adds to a request that misses.
A set of the keys held answers "not there" for the price of a hash.

The set is worked out only when it pays: once a cache object has looked up, in the database,
keys numbering a sixteenth of the rows the table held when first asked (reading a key costs
about what looking one up does), and only for a table of at most `MOST_KEYS` rows (it costs
~100 bytes a key). It is then kept whole:

- the keys this process keeps are added as they are kept (`add`), before they are written;
- the rows other processes wrote are read once a second, as a lookup comes (`rowid`s above the
  highest seen); a table whose highest `rowid` went down (rows deleted) is read again whole.

So a key another process wrote in the last second may be missed: that request is sent, as it
would be had both processes missed it at once (the cache still keeps one answer for it). A key
in the set is looked up as before: a row found expired (`ttl`), or deleted since, is a miss.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable

__all__ = ["MOST_KEYS", "KnownKeys"]

MOST_KEYS = 250_000
"""Rows a table may hold for its keys to be kept in memory (about 25 MB at most)."""
_REFRESH_SECONDS = 1.0
"""How often the rows other processes wrote are read in (at most)."""
_WORTH = 16
"""The set is worked out once keys looked up reach the table's rows divided by this."""


class KnownKeys:
    """The keys of one SQLite cache's table (see the module docstring): `get()` is the set,
    or `None` while it is not kept (every key is then looked up)."""

    __slots__ = ("_asked", "_keys", "_off", "_refresh_at", "_rowid", "_rows")

    def __init__(self) -> None:
        self._keys: set[str] | None = None
        self._rowid = 0
        """The highest `rowid` read."""
        self._refresh_at = 0.0
        self._rows: int | None = None
        """The table's highest `rowid` when first asked (its size, give or take deletions)."""
        self._asked = 0
        self._off = False

    def get(
        self, connection: sqlite3.Connection, asking: int, kept: Callable[[], Iterable[str]]
    ) -> set[str] | None:
        """The keys held, on `connection` (the loop's), read in or brought up to date as due;
        `None` when they are not kept (yet, or at all): look `asking` keys up in the database.
        `kept` gives the keys this process kept and has not written yet (held too, whenever
        the table is read in). A database error turns the set off for good (the lookup then
        says what failed)."""
        keys = self._keys
        if keys is not None:
            if time.monotonic() >= self._refresh_at:
                self._refresh(connection, keys, kept)
                return self._keys
            return keys
        if self._off:
            return None
        try:
            if self._rows is None:
                self._rows = _top(connection)
                if self._rows > MOST_KEYS:
                    self._off = True
                    return None
            self._asked += asking
            if self._asked * _WORTH < self._rows:
                return None
            self._load(connection, kept)
        except sqlite3.Error:
            self._turn_off()
        return self._keys

    def add(self, keys: Iterable[str]) -> None:
        """Keys kept by this process (not written yet): held from now on."""
        if self._keys is not None:
            self._keys.update(keys)

    def forget(self) -> None:
        """Rows were deleted by this process: read the table again when next worth it."""
        self._keys = None
        self._rows = None
        self._asked = 0

    def _load(self, connection: sqlite3.Connection, kept: Callable[[], Iterable[str]]) -> None:
        top = _top(connection)
        keys = {key for (key,) in connection.execute("SELECT key FROM jib_response_cache")}
        keys.update(kept())
        self._rowid = top
        self._keys = keys
        self._refresh_at = time.monotonic() + _REFRESH_SECONDS

    def _refresh(
        self, connection: sqlite3.Connection, keys: set[str], kept: Callable[[], Iterable[str]]
    ) -> None:
        try:
            top = _top(connection)
            if top < self._rowid:  # rows deleted: rowids may be used again, read it all
                self._load(connection, kept)
                return
            if top > self._rowid:
                rows = connection.execute(
                    "SELECT key FROM jib_response_cache WHERE rowid > ? AND rowid <= ?",
                    (self._rowid, top),
                )
                keys.update(key for (key,) in rows)
                self._rowid = top
                if len(keys) > MOST_KEYS:
                    self._turn_off()
                    return
        except sqlite3.Error:
            self._turn_off()
            return
        self._refresh_at = time.monotonic() + _REFRESH_SECONDS

    def _turn_off(self) -> None:
        self._keys = None
        self._off = True


def _top(connection: sqlite3.Connection) -> int:
    """The table's highest `rowid` (0 when empty): found at the end of its b-tree."""
    (top,) = connection.execute("SELECT max(rowid) FROM jib_response_cache").fetchone()
    return int(top or 0)
