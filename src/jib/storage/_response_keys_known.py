"""The keys a SQLite response cache holds, kept in memory, so that a lookup of keys it does not
hold (every request of a run filling the cache) asks the database nothing.

A lookup by primary key is cheap on its own (microseconds), but it runs once per batch between
the requests' own work, with SQLite's pages and code gone cold: in a real run it costs several
times what it costs in a loop, and it is most of what the cache adds to a request that misses.
A set of the keys held answers "not there" for the price of a hash.

The set is worked out only when it pays: once a cache object has looked up, in the database,
keys numbering a sixteenth of the rows the table held when first asked (reading a key costs
about what looking one up does), and only for a table of at most `MOST_KEYS` rows (it costs
~100 bytes a key). It is read `_STEP` keys a lookup (a few milliseconds each: reading 250,000
at once would hold the event loop for a tenth of a second or more), every key looked up in the
database until it is whole. It is then kept whole:

- the keys this process keeps are added as they are kept (`add`), before they are written;
- the rows other processes wrote are read once a second, as a lookup comes (`rowid`s above the
  highest read, `_STEP` a lookup).

SQLite gives a new row the `rowid` above the highest, so a row written with a `rowid` already
read is one written after the rows at the top were deleted (`jib cache clear`, of a run's
answers or all of them; a `VACUUM` may renumber them too): the key read last must still be at
its `rowid`, else the table is read again whole, a step a lookup as at first. (Only the same
key written again at that very `rowid` goes unnoticed, with the keys written again below it.)

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
_STEP = 8192
"""Keys read in a lookup, while the set is read in or brought up to date (a few ms)."""


class KnownKeys:
    """The keys of one SQLite cache's table (see the module docstring): `get()` is the set,
    or `None` while it is not kept (every key is then looked up)."""

    __slots__ = (
        "_after",
        "_asked",
        "_keys",
        "_last",
        "_loading",
        "_off",
        "_refresh_at",
        "_rowid",
        "_rows",
    )

    def __init__(self) -> None:
        self._keys: set[str] | None = None
        """The set, once whole."""
        self._loading: set[str] | None = None
        """The set while it is read in (`_after`: the last key read, in the key's order)."""
        self._after = ""
        self._rowid = 0
        """The highest `rowid` read, and its key (`_last`)."""
        self._last: str | None = None
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
                self._step(connection, kept)
            return self._keys
        if self._off:
            return None
        if self._loading is None:
            try:
                if self._rows is None:
                    self._rows = _top(connection)[0]
                    if self._rows > MOST_KEYS:
                        self._off = True
                        return None
            except sqlite3.Error:
                self._turn_off()
                return None
            self._asked += asking
            if self._asked * _WORTH < self._rows:
                return None
        self._step(connection, kept)
        return self._keys

    def add(self, keys: Iterable[str]) -> None:
        """Keys kept by this process (not written yet): held from now on."""
        # `_loading` first: a load that ends sets `_keys` before it lets go of `_loading`.
        target = self._loading
        if target is None:
            target = self._keys
        if target is not None:
            target.update(keys)

    def forget(self) -> None:
        """Rows were deleted by this process: read the table again when next worth it."""
        self._keys = None
        self._loading = None
        self._rows = None
        self._asked = 0

    def _step(self, connection: sqlite3.Connection, kept: Callable[[], Iterable[str]]) -> None:
        """Read the next `_STEP` keys: of the rows written since last read, else (the set not
        whole yet, or rows deleted) of the table being read in."""
        try:
            keys = self._keys
            if keys is not None and self._read_on(connection, keys):
                return
            loading = self._loading
            if loading is None:
                loading = self._load(connection, kept)
            if loading is not None:
                self._read_in(connection, loading)
        except sqlite3.Error:
            self._turn_off()

    def _read_on(self, connection: sqlite3.Connection, keys: set[str]) -> bool:
        """Add to `keys` the next `_STEP` rows written since last read; `False` when the row
        read last is gone (rows were deleted, their rowids may be used again: the table is to
        be read in again)."""
        rows = connection.execute(
            "SELECT rowid, key FROM jib_response_cache WHERE rowid >= ? ORDER BY rowid LIMIT ?",
            (self._rowid, _STEP + 1),
        ).fetchall()
        if self._rowid and (not rows or tuple(rows[0]) != (self._rowid, self._last)):
            return False
        keys.update(key for _, key in rows)
        if rows:
            self._rowid, self._last = rows[-1]
        if len(keys) > MOST_KEYS:
            self._turn_off()
        elif len(rows) <= _STEP:  # up to date; else the rest at the next lookup
            self._refresh_at = time.monotonic() + _REFRESH_SECONDS
        return True

    def _load(
        self, connection: sqlite3.Connection, kept: Callable[[], Iterable[str]]
    ) -> set[str] | None:
        """Start reading the table in; `None` when it has grown past `MOST_KEYS` (the set is
        then turned off). The set is where `add` puts keys before `kept` is asked, so a key
        kept meanwhile (on another thread) is in one or the other."""
        loading: set[str] = set()
        self._loading = loading
        self._keys = None
        loading.update(kept())
        self._rowid, self._last = _top(connection)  # rows written after: read by a refresh
        self._after = ""
        if self._rowid > MOST_KEYS:
            self._turn_off()
            return None
        return loading

    def _read_in(self, connection: sqlite3.Connection, loading: set[str]) -> None:
        """The next `_STEP` keys of the table being read in, in the key's order (its index is
        smaller than the table); the set is whole once they run out."""
        rows = connection.execute(
            "SELECT key FROM jib_response_cache WHERE key > ? ORDER BY key LIMIT ?",
            (self._after, _STEP),
        ).fetchall()
        loading.update(key for (key,) in rows)
        if len(rows) == _STEP:
            self._after = rows[-1][0]
        elif self._loading is loading:  # not forgotten meanwhile
            self._keys = loading
            self._loading = None
            self._refresh_at = time.monotonic() + _REFRESH_SECONDS

    def _turn_off(self) -> None:
        self._keys = None
        self._loading = None
        self._off = True


def _top(connection: sqlite3.Connection) -> tuple[int, str | None]:
    """The table's highest `rowid` and its key ((0, None) when empty): at the end of its
    b-tree."""
    row = connection.execute(
        "SELECT rowid, key FROM jib_response_cache ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    return (0, None) if row is None else (int(row[0]), row[1])
