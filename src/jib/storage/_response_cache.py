"""jib's response cache: successful answers kept under the request that got them, and reused.

Not the provider's prompt cache (`ChatPipeline.cache("latest")`, `cache_control`): this one
keeps whole answers, in a database, so the same request is paid for once.

Tables (created when missing, beside the store's own, or in a database of their own):

- `jib_response_cache`: one row per (key, sample). `key` is the hash of what decides the
  answer (`jib.generator._response_key`), `sample` the sample index (`--repeat 3` keeps three
  answers). The primary key is the pair, and rows are written with insert-or-ignore (SQLite
  `INSERT OR IGNORE`, PostgreSQL `ON CONFLICT DO NOTHING`): two processes that both asked for a
  missing answer never leave two answers, and the first one written is the one served.
  `answer` is the answer's JSON (message, stop reason, usage, extra), `origin_chat` the id of
  the chat it was first made for, `created_at` seconds since the epoch (what `ttl` reads).
- `jib_response_cache_stats`: hits, misses and the cost saved, per (run, generator), added to
  as runs go (`jib cache`, `jib runs`).

Only answers are kept: never an error, never a cut stream, never a secret (the key is a hash of
material with every secret left out; see `jib.generator._response_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from jib.generator._response_key import KeyPrefix, key_prefix
from jib.storage._engine import WRITE, create_store_engine, redacted_url
from jib.storage._errors import StoreError
from jib.storage._location import default_store_url, to_database_url
from jib.storage._loop_sqlite import Busy, LoopConnection, is_busy
from jib.storage._response_answers import CachedSender
from jib.storage._response_cache_admin import (
    clear_answers,
    response_cache_run_stats,
    run_stats,
    summary,
)
from jib.storage._response_cache_tables import (
    CachedAnswer,
    NewEntry,
    ResponseCacheStats,
    response_cache_tables,
)
from jib.storage._response_keys_known import KnownKeys

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.messages import Usage

__all__ = [
    "CachedAnswer",
    "NewEntry",
    "ResponseCache",
    "ResponseCacheStats",
    "open_response_cache",
    "response_cache_run_stats",
    "response_cache_tables",
]

logger = logging.getLogger("jib.storage.response_cache")

_LOOKUP_CHUNK = 100
"""Keys per lookup query (SQLite allows 999 parameters before 3.32)."""
_INSERT_ROWS = 100
"""Rows per SQLite insert statement (at most 9 parameters each: SQLite before 3.32 allows
999)."""
WRITE_SLICE = 2048
"""Answers written per transaction on the event loop (a slice takes a few milliseconds). Keys
are random, so each answer dirties its own page of the key's index until a slice is big enough
for answers to share pages: each page is written once per transaction, and 1,024 answers cost
about a third less each than 256 do, 2,048 a tenth less again (more buys little)."""
WRITE_WITHIN = 1.0
"""Seconds an answer may wait to be written (at the end of the next batch once it has): a
run killed or crashed loses at most about that much of what it paid for, not `write_every`
answers."""


def open_response_cache(
    url: str | None = None,
    *,
    ttl: float | None = None,
    run: str | None = None,
    write_every: int = 1,
) -> ResponseCache:
    """Open (creating its tables on first use) jib's response cache.

    Args:
        url: a database URL or SQLite file path; `None` for the default store (`$JIB_STORE`,
            else `jib.db` in the user's data folder): the cache then lives beside the chats.
        ttl: seconds an answer may be served after it was stored; `None` for ever.
            `ValueError` unless positive and finite.
        run: the run name its hits and misses are counted under (`jib cache`, `jib runs`).
        write_every: answers kept in memory before they are written, in one transaction, at
            the end of a batch (1: every batch writes what it got); `flush()` and `close()`
            write the rest.

    Raises:
        StoreError: the database cannot be reached.
    """
    _check_ttl(ttl)
    location = default_store_url() if url is None else to_database_url(str(url))
    return ResponseCache(create_store_engine(location), ttl=ttl, run=run, write_every=write_every)


class ResponseCache:
    """A response cache in a SQLite or PostgreSQL database; see the module docstring.

    Set it on a generator (`generator.with_response_cache(cache)`) or a pipeline
    (`pipeline.with_response_cache(cache)`): each request is then looked up first, by what
    decides its answer and its sample index, and each successful answer is kept. A hit comes
    back with `extra["response_cache"] = {"hit": True, "chat_id": …, "stored_at": …}`, no
    attempts, and the lookup's time as its latency.

    Writes are buffered and go in one transaction at a time, at the end of each batch call
    (`write_every`: only once that many are waiting; `flush()` and `close()` write the rest).
    Thread-safe; usable from several event loops.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        ttl: float | None = None,
        run: str | None = None,
        write_every: int = 1,
    ) -> None:
        _check_ttl(ttl)
        self._engine = engine
        self._url = redacted_url(engine.url)
        self._postgres = engine.url.get_backend_name() == "postgresql"
        self.ttl = ttl
        self.run = run
        self.write_every = max(1, write_every)
        self.price: Callable[[Generator, Usage], float | None] = _list_price
        """What an answer costs (`None`: unknown), for the cost the hits saved."""
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], NewEntry] = {}
        self._writing: list[dict[tuple[str, int], NewEntry]] = []
        """The answers each flush under way took from `_pending`, until it has written them."""
        self._pending_since = 0.0
        """When the oldest answer of `_pending` was kept (`time.monotonic()`)."""
        self._broken: dict[tuple[str, int], float] = {}
        """Kept answers found unreadable, by pair: when they were kept (what the next answer
        written for the pair replaces)."""
        self.failure: StoreError | None = None
        """Why the cache failed where the chats it serves must not fail (a lookup or a write
        during a batch, `CachedSender`; the last write of `jib run`), see `failed`: from then
        on requests are sent as they are, nothing is looked up or kept, and `flush()` and
        `close()` raise it."""
        self._stats: dict[str, ResponseCacheStats] = {}
        self._sql: dict[tuple[int, bool], str] = {}
        self._sql_rows: dict[tuple[int, float | None], str] = {}
        self._sql_shared: dict[tuple[int, float | None], str] = {}
        self._labels: dict[int, tuple[Any, str, str]] = {}
        self._identities: dict[
            int, tuple[Any, dict[str, Any], Any, dict[tuple[str | None, ...], KeyPrefix]]
        ] = {}
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._local = None if self._postgres else LoopConnection(engine)
        self._known = KnownKeys()
        """The keys the table holds, once worth keeping in memory (SQLite, on the loop)."""
        self._flights: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], Any]] = (
            weakref.WeakKeyDictionary()
        )
        with self._errors("open"):
            self._create_tables()

    # -- identity ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._url

    def __repr__(self) -> str:
        ttl = "" if self.ttl is None else f", ttl={self.ttl:g}"
        return f"ResponseCache({self._url!r}{ttl})"

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is waiting, then close every connection."""
        try:
            self.flush()
        finally:
            if self._local is not None:
                self._local.close()
            self._engine.dispose()

    def _create_tables(self) -> None:
        """Create the tables when missing. Two processes may try at once: SQLite queues them
        (`BEGIN IMMEDIATE`); on PostgreSQL the loser's error is dropped when the tables exist."""
        try:
            with self._engine.connect() as connection:
                connection.execution_options(**WRITE)
                with connection.begin():
                    response_cache_tables.create_all(connection, checkfirst=True)
        except SQLAlchemyError:
            from sqlalchemy import inspect

            found = inspect(self._engine)
            if not all(found.has_table(t.name) for t in response_cache_tables.sorted_tables):
                raise

    def sender(self, generator: Generator, samples: dict[int, int] | None = None) -> Any:
        """`generator`'s batch methods through this cache, for one batch of a pipeline (see
        `jib.storage._response_answers.CachedSender`)."""
        return CachedSender(self, generator, samples)

    def label_of(self, generator: Generator) -> str:
        """How `generator` is named in the cache (its identifier, secrets left out); worked
        out once per generator object and model."""
        known = self._labels.get(id(generator))
        if known is not None and known[0] is generator and known[1] is generator.model:
            return known[2]
        from jib.errors import JibError

        try:
            label = generator.to_identifier()
        except JibError:
            label = f"{type(generator).__name__}:{generator.model}"
        if len(self._labels) > 1000:
            self._labels.clear()
        self._labels[id(generator)] = (generator, generator.model, label)
        return label

    def identity_of(self, generator: Generator) -> Any:
        """`generator.response_cache_identity()`, worked out once per generator object while
        its attributes stay as they were (a pipeline makes a sender per batch)."""
        return self._identity_entry(generator)[2]

    def key_prefix(
        self, generator: Generator, kind: str, secrets: Sequence[str | None]
    ) -> KeyPrefix:
        """The part of every key `generator`'s requests of `kind` share, hashed once (see
        `jib.generator._response_key.key_prefix`); kept while its identity stands."""
        entry = self._identity_entry(generator)
        wanted = (kind, *secrets)
        known = entry[3].get(wanted)
        if known is None:
            known = entry[3][wanted] = key_prefix(kind, entry[2], secrets)
        return known

    def _identity_entry(
        self, generator: Generator
    ) -> tuple[Any, dict[str, Any], Any, dict[tuple[str | None, ...], KeyPrefix]]:
        known = self._identities.get(id(generator))
        if known is not None and known[0] is generator and known[1] == generator.__dict__:
            return known
        identity = generator.response_cache_identity()
        if len(self._identities) > 1000:
            self._identities.clear()
        known = self._identities[id(generator)] = (
            generator,
            dict(generator.__dict__),
            identity,
            {},
        )
        return known

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], CachedAnswer]:
        """The kept answers of these (key, sample) pairs that have not expired.

        The hot path of every cached request: one prepared statement per chunk of keys, on the
        connection kept for the event loop's thread (SQLite) or a pooled DB-API connection.
        """
        if not keys:
            return {}
        connection = self._loop_connection(open_=False)  # the loop's, on the loop's thread
        unwritten, keys = self._to_read(connection, keys)
        if not keys:
            return unwritten
        if connection is not None:
            with contextlib.suppress(Busy):
                return _joined(self._read(connection, keys), unwritten)
        return _joined(self._read_pooled(keys), unwritten)

    async def alookup(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], CachedAnswer]:
        """`lookup`, from the event loop: SQLite answers at once, on the loop (a lookup by
        primary key in a local file takes microseconds, less than a hop to a thread); a
        PostgreSQL lookup, or a SQLite one that would wait for another process's lock, is
        waited for in a worker thread."""
        if not keys:
            return {}
        connection = self._loop_connection()
        unwritten, keys = self._to_read(connection, keys)
        if not keys:
            return unwritten
        if connection is not None:
            with contextlib.suppress(Busy):
                return _joined(self._read(connection, keys), unwritten)
        return _joined(await asyncio.to_thread(self._read_pooled, keys), unwritten)

    def _to_read(
        self, connection: sqlite3.Connection | None, keys: Sequence[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], CachedAnswer], Sequence[tuple[str, int]]]:
        """The answers to `keys` kept and not written yet (`_unwritten`), and the keys left to
        look up in the database: none that the table surely does not hold (`KnownKeys`, when
        kept on the loop's `connection`), so a cache being filled asks the database nothing."""
        if connection is not None:
            known = self._known.get(connection, len(keys), self._kept_keys)
            if known is not None:
                keys = [pair for pair in keys if pair[0] in known]
        if not keys:
            return {}, keys
        return self._unwritten(keys)

    def _kept_keys(self) -> list[str]:
        """The keys of the answers kept and not written yet (waiting, or being written)."""
        with self._lock:
            return [key for key, _ in chain(self._pending, *self._writing)]

    def _unwritten(
        self, keys: Sequence[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], CachedAnswer], Sequence[tuple[str, int]]]:
        """The answers to `keys` this cache kept but has not written yet (they wait to be
        written many to a transaction, see `write_every`), and the keys left to read: a prompt
        asked again later in a run is answered by its first answer, not sent again."""
        with self._lock:
            if not self._pending and not self._writing:
                return {}, keys
            kept: dict[tuple[str, int], NewEntry] = {}
            rest: list[tuple[str, int]] = []
            for pair in keys:
                entry = self._waiting(pair)
                if entry is None:
                    rest.append(pair)
                else:
                    kept[pair] = entry
        if not kept:
            return {}, keys
        now = time.time()
        found = {
            pair: CachedAnswer(orjson.loads(entry.answer), entry.origin_chat, now)
            for pair, entry in kept.items()
        }
        return found, rest

    def _read_pooled(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], CachedAnswer]:
        try:
            connection = self._engine.raw_connection()
        except SQLAlchemyError as exc:
            reason = _first_line(getattr(exc, "orig", None) or exc)
            raise StoreError(f"cannot read the response cache {self._url}: {reason}") from exc
        try:
            cursor = connection.cursor()
            try:
                return self._read(cursor, keys)
            except Busy as exc:  # waited for the store's busy timeout
                raise StoreError(f"cannot read the response cache {self._url}: {exc}") from exc
            finally:
                cursor.close()
        except StoreError:
            connection.invalidate()
            raise
        finally:
            connection.close()  # back to the pool, its transaction (if any) rolled back

    def _read(
        self, on: Any, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], CachedAnswer]:
        """The lookup, on `on` (a DB-API connection or cursor: what has `execute`).

        Raises:
            Busy: on the loop's connection, another process holds a lock the read needs.
            StoreError: the database failed otherwise.
        """
        found: dict[tuple[str, int], CachedAnswer] = {}
        unique = list({key: None for key, _ in keys})  # a key asked for several samples once
        oldest = None if self.ttl is None else time.time() - self.ttl
        wanted: set[tuple[str, int]] | None = None
        try:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = (
                    unique
                    if len(unique) <= _LOOKUP_CHUNK
                    else unique[start : start + _LOOKUP_CHUNK]
                )
                sql = self._lookup_sql(len(chunk), oldest is not None)
                rows = on.execute(sql, chunk if oldest is None else [*chunk, oldest]).fetchall()
                if rows:
                    if wanted is None:
                        wanted = set(keys)
                    for key, sample, answer, origin, created in rows:
                        if (key, sample) in wanted:
                            try:
                                data = orjson.loads(answer)
                            except orjson.JSONDecodeError:
                                data = None
                            if type(data) is not dict:
                                self.broken((key, sample), created)
                                continue
                            found[(key, sample)] = CachedAnswer(data, origin, created)
        except self._dbapi_error as exc:
            raise self._driver_error(exc, "read") from exc
        return found

    def _driver_error(self, exc: BaseException, action: str) -> Exception:
        """What the driver's `exc` is raised as: `Busy` for a lock another writer holds (the
        caller goes to a thread), else a `StoreError` saying what could not be done."""
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            return Busy(str(exc))
        return StoreError(f"cannot {action} the response cache {self._url}: {_first_line(exc)}")

    def _loop_connection(self, *, open_: bool = True) -> sqlite3.Connection | None:
        """The SQLite connection kept for this thread (see `jib.storage._loop_sqlite`; opened
        for it when none is kept yet and `open_`: the async methods ask from the event loop),
        or `None` (PostgreSQL, another thread, an in-memory database)."""
        if self._local is None:
            return None
        try:
            return self._local.get(open_=open_)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            reason = _first_line(getattr(exc, "orig", None) or exc)
            raise StoreError(f"cannot read the response cache {self._url}: {reason}") from exc

    def _lookup_sql(self, count: int, with_ttl: bool) -> str:
        """The lookup of `count` keys (then the oldest time served, `with_ttl`). PostgreSQL:
        `key IN (…)`. SQLite: the keys as a `VALUES` list, each looked up in the primary key's
        index in turn (`CROSS JOIN` keeps that order); an `IN` list first builds a temporary
        b-tree of its values, and a `UNION ALL` of one query per key opens a cursor per key,
        both dearer than the lookups themselves."""
        known = self._sql.get((count, with_ttl))
        if known is None:
            if self._postgres:
                sql = (
                    "SELECT key, sample, answer, origin_chat, created_at FROM jib_response_cache "
                    f"WHERE key IN ({', '.join(['%s'] * count)})"
                )
                if with_ttl:
                    sql += " AND created_at >= %s"
            else:
                wanted = ", ".join(f"(?{n})" for n in range(1, count + 1))
                age = f" AND c.created_at >= ?{count + 1}" if with_ttl else ""
                sql = (
                    f"WITH wanted(key) AS (VALUES {wanted}) "
                    "SELECT c.key, c.sample, c.answer, c.origin_chat, c.created_at "
                    "FROM wanted CROSS JOIN jib_response_cache AS c "
                    f"ON c.key = wanted.key{age}"
                )
            known = self._sql[(count, with_ttl)] = sql
        return known

    # -- writing -------------------------------------------------------------------------------

    def keep(self, entry: NewEntry) -> None:
        """Queue an answer to be written (the first answer queued for a key and sample wins)."""
        self.keep_all((entry,))

    def keep_all(self, entries: Sequence[NewEntry]) -> None:
        """`keep` each of `entries`, in order (nothing once the cache has `failed`)."""
        if self.failure is not None:
            return
        with self._lock:
            pending = self._pending
            if not pending:
                self._pending_since = time.monotonic()
            for entry in entries:
                pending.setdefault((entry.key, entry.sample), entry)
            self._known.add(entry.key for entry in entries)

    def flights(self, loop: asyncio.AbstractEventLoop) -> dict[tuple[str, int], Any]:
        """The requests being sent on `loop` for a missing key and sample, by (key, sample)
        (`jib.storage._response_answers.Flights`, the batch sending it): what single-flight
        reads and writes."""
        known = self._flights.get(loop)
        if known is None:
            known = self._flights[loop] = {}
        return known

    def pending(self, key: str, sample: int) -> NewEntry | None:
        """The queued entry of this key and sample, if it is not written yet."""
        with self._lock:
            return self._waiting((key, sample))

    def _waiting(self, pair: tuple[str, int]) -> NewEntry | None:
        """The answer kept for `pair` and not written yet: waiting, or being written (called
        with `_lock` held)."""
        entry = self._pending.get(pair)
        if entry is None:
            for writing in self._writing:
                entry = writing.get(pair)
                if entry is not None:
                    break
        return entry

    def count(self, generator: str, *, hits: int = 0, misses: int = 0, saved: float = 0.0) -> None:
        """Add to the hits, misses and saved cost of `generator` (written with the answers)."""
        with self._lock:
            counts = self._stats.get(generator)
            if counts is None:
                counts = self._stats[generator] = ResponseCacheStats()
            counts.hits += hits
            counts.misses += misses
            counts.saved_usd += saved

    def failed(self, error: StoreError) -> None:
        """The cache failed where the chats it serves must not (see `failure`): say so once
        (a warning on the `jib.storage.response_cache` logger), and stop using it."""
        if self.failure is not None:
            return
        self.failure = error
        logger.warning(
            "%s; the response cache is no longer used: requests are sent as they are and their "
            "answers are not kept",
            error,
        )

    def due(self) -> bool:
        """Whether answers should be written now: `write_every` of them wait, or the oldest
        has waited `WRITE_WITHIN` seconds (so a run killed loses little it paid for)."""
        pending = len(self._pending)
        return pending >= self.write_every or (
            pending > 0 and time.monotonic() - self._pending_since >= WRITE_WITHIN
        )

    def broken(self, pair: tuple[str, int], created_at: float) -> None:
        """The answer kept for `pair` at `created_at` cannot be read (its row was damaged): it
        is a miss, and the answer sent for it replaces it when written."""
        logger.warning(
            "the response cache %s holds an unreadable answer (key %s, sample %d): it is asked "
            "for again and replaced",
            self._url,
            pair[0],
            pair[1],
        )
        with self._lock:
            self._broken[pair] = created_at

    def flush(self) -> int:
        """Write every waiting answer and count, in one transaction; returns answers written.

        An answer whose key and sample another process wrote first is left as that one wrote
        it (unless that one has expired, see `ttl`, or cannot be read: the new one replaces it).

        Raises:
            StoreError: the database failed (now, or during a batch: `failure`).
        """
        if self.failure is not None:
            raise StoreError(str(self.failure)) from self.failure
        taken, counts, now = self._take()
        entries = list(taken.values())
        try:
            if entries or counts:
                replace = self._take_broken(taken)
                self._write_pooled(self._rows(entries, now), counts, replace)
        finally:
            self._written(taken)
        return len(entries)

    async def aflush(self) -> int:
        """`flush`, from the event loop. SQLite: on the loop, a slice of answers per
        transaction (so the loop is never held for long) with the counts in the last; a slice
        that would wait for another process's write lock, and the rest after it, go to a worker
        thread. PostgreSQL: in a worker thread, in one transaction."""
        if self.failure is not None:
            raise StoreError(str(self.failure)) from self.failure
        taken, counts, now = self._take()
        if not taken and not counts:
            return 0
        entries = list(taken.values())
        replace = self._take_broken(taken)
        try:
            start = 0
            connection = self._loop_connection()
            if connection is not None:
                while True:
                    end = start + WRITE_SLICE
                    last = end >= len(entries)
                    try:
                        self._write_on(
                            connection, entries[start:end], now, counts if last else {}, replace
                        )
                    except Busy:
                        break
                    replace = []
                    if last:
                        return len(entries)
                    start = end
                    await asyncio.sleep(0)  # let the loop run between slices
            rows = self._rows(entries[start:], now)
            await asyncio.to_thread(self._write_pooled, rows, counts, replace)
            return len(entries)
        finally:
            self._written(taken)

    def _take(
        self,
    ) -> tuple[dict[tuple[str, int], NewEntry], dict[str, ResponseCacheStats], float]:
        """The waiting answers (still found by lookups until `_written`) and the waiting
        counts, both taken; the time they are kept at."""
        with self._lock:
            taken, self._pending = self._pending, {}
            if taken:
                self._writing.append(taken)
            counts, self._stats = self._stats, {}
        return taken, counts, time.time()

    def _take_broken(self, taken: dict[tuple[str, int], NewEntry]) -> list[tuple[str, int, float]]:
        """The unreadable rows (`broken`) that answers of `taken` replace: (key, sample, when
        kept) each. The others stay: their answers may still be on their way (a batch running
        beside the one whose answers are written now)."""
        if not self._broken:
            return []
        with self._lock:
            broken = self._broken
            replace = [(*pair, broken.pop(pair)) for pair in list(broken) if pair in taken]
        return replace

    def _written(self, taken: dict[tuple[str, int], NewEntry]) -> None:
        """The flush that took `taken` is over (written, or failed: then they are lost, as a
        cache may lose answers)."""
        if not taken:
            return
        with self._lock:
            for index, writing in enumerate(self._writing):
                if writing is taken:
                    del self._writing[index]
                    break

    def _rows(self, entries: list[NewEntry], now: float) -> list[tuple[Any, ...]]:
        """`entries` as rows to insert (every column, in `_insert_sql`'s order)."""
        run = self.run
        return [
            (
                e.key,
                e.sample,
                e.generator,
                e.kind,
                e.answer.decode(),
                e.origin_chat,
                run,
                now,
                len(e.answer),
            )
            for e in entries
        ]

    def _write_pooled(
        self,
        rows: list[tuple[Any, ...]],
        counts: dict[str, ResponseCacheStats],
        replace: Sequence[tuple[str, int, float]] = (),
    ) -> None:
        with self._errors("write to"), self._engine.connect() as connection:
            connection.execution_options(**WRITE)
            with connection.begin():
                if replace:
                    connection.exec_driver_sql(self._delete_sql(), list(replace))
                if rows:
                    connection.exec_driver_sql(self._insert_sql(), rows)
                for generator, counted in counts.items():
                    connection.exec_driver_sql(
                        self._stats_sql(), self._stats_row(generator, counted)
                    )

    def _write_on(
        self,
        connection: sqlite3.Connection,
        entries: list[NewEntry],
        now: float,
        counts: dict[str, ResponseCacheStats],
        replace: Sequence[tuple[str, int, float]] = (),
    ) -> None:
        """Write `entries` (kept at `now`) and `counts` in one transaction on the loop's SQLite
        connection, first deleting the unreadable rows they `replace`.

        Raises:
            Busy: another process holds the write lock (nothing was written).
            StoreError: the database failed otherwise (nothing was written).
        """
        run = self.run
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if replace:
                    connection.executemany(self._delete_sql(), replace)
                for start in range(0, len(entries), _INSERT_ROWS):
                    part = entries[start : start + _INSERT_ROWS]
                    generator, kind = part[0].generator, part[0].kind
                    # What the rows share is bound once (each value bound is copied), when
                    # they are of one generator and kind.
                    values: list[Any] = [generator, kind, run, now]
                    for e in part:
                        if e.generator != generator or e.kind != kind:
                            break
                        answer = e.answer
                        values += (e.key, e.sample, answer.decode(), e.origin_chat, len(answer))
                    else:
                        connection.execute(self._insert_shared_sql(len(part)), values)
                        continue
                    rows = self._rows(part, now)
                    connection.execute(self._insert_rows_sql(len(part)), _flat(rows))
                for generator, counted in counts.items():
                    connection.execute(self._stats_sql(), self._stats_row(generator, counted))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._driver_error(exc, "write to") from exc

    def _insert_sql(self) -> str:
        """Insert-or-ignore, in the driver's own SQL (one statement for many rows)."""
        mark = "%s" if self._postgres else "?"
        return self._insert_values(f"({', '.join([mark] * 9)})")

    def _insert_values(self, values: str) -> str:
        """Insert `values` (rows of every column, in `_rows`' order), an existing key and
        sample left alone (SQLite's `OR IGNORE`) or replaced as `_on_conflict` says."""
        columns = "key, sample, generator, kind, answer, origin_chat, run, created_at, size"
        ignore = "" if self._postgres or self.ttl is not None else " OR IGNORE"
        return (
            f"INSERT{ignore} INTO jib_response_cache ({columns}) VALUES {values}"
            + self._on_conflict()
        )

    def _on_conflict(self) -> str:
        """What an insert does with a row its key and sample already have (after `VALUES`):
        nothing, unless
        the cache has a `ttl` and that row has expired (older than `ttl` before the new one):
        the new answer then replaces it, so an expired answer is asked for once, not on every
        run from then on. Two processes refreshing it at once: the first written stays."""
        if self.ttl is None:
            return " ON CONFLICT DO NOTHING" if self._postgres else ""
        table = "jib_response_cache"
        columns = ("generator", "kind", "answer", "origin_chat", "run", "created_at", "size")
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns)
        return (
            f" ON CONFLICT (key, sample) DO UPDATE SET {updates} "
            f"WHERE {table}.created_at < excluded.created_at - {float(self.ttl)!r}"
        )

    def _delete_sql(self) -> str:
        """Delete a row by key, sample and when it was kept (an unreadable row being
        replaced: not one another process has replaced meanwhile)."""
        mark = "%s" if self._postgres else "?"
        return (
            f"DELETE FROM jib_response_cache WHERE key = {mark} AND sample = {mark} "
            f"AND created_at = {mark}"
        )

    def _insert_rows_sql(self, count: int) -> str:
        """SQLite's insert-or-ignore of `count` rows in one statement (`VALUES (…), (…)`): a
        statement run once per row costs more than its row."""
        known = self._sql_rows.get((count, self.ttl))
        if known is None:
            known = self._insert_values(", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count))
            if len(self._sql_rows) > 64:
                self._sql_rows.clear()
            self._sql_rows[(count, self.ttl)] = known
        return known

    def _insert_shared_sql(self, count: int) -> str:
        """`_insert_rows_sql` for rows of one generator and kind: the generator, the kind, the
        run and the time are bound once (`?1`–`?4`), then each row's own five values."""
        known = self._sql_shared.get((count, self.ttl))
        if known is None:
            known = self._insert_values(
                ", ".join(
                    f"(?{n}, ?{n + 1}, ?1, ?2, ?{n + 2}, ?{n + 3}, ?3, ?4, ?{n + 4})"
                    for n in range(5, 5 + 5 * count, 5)
                )
            )
            if len(self._sql_shared) > 64:
                self._sql_shared.clear()
            self._sql_shared[(count, self.ttl)] = known
        return known

    def _stats_sql(self) -> str:
        """Add to a run's and generator's counts (the row made when missing), in the driver's
        own SQL (SQLite and PostgreSQL share the upsert's shape)."""
        mark = "%s" if self._postgres else "?"
        table = "jib_response_cache_stats"
        return (
            f"INSERT INTO {table} (run, generator, hits, misses, saved_usd) "
            f"VALUES ({', '.join([mark] * 5)}) ON CONFLICT (run, generator) DO UPDATE SET "
            f"hits = {table}.hits + excluded.hits, misses = {table}.misses + excluded.misses, "
            f"saved_usd = {table}.saved_usd + excluded.saved_usd"
        )

    def _stats_row(self, generator: str, counted: ResponseCacheStats) -> tuple[Any, ...]:
        return (self.run or "", generator, counted.hits, counted.misses, counted.saved_usd)

    # -- what `jib cache` shows and does -------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """Per generator: `generator`, `entries`, `bytes`, `oldest`, `newest` (epoch seconds),
        `hits`, `misses` and `saved_usd` (over every run); what this cache has not written yet
        is written first."""
        self.flush()
        with self._errors("read"), self._engine.connect() as connection:
            return summary(connection)

    def run_stats(self) -> dict[str, ResponseCacheStats]:
        """Hits, misses and saved cost per run (all generators summed); runs with none left
        out. What this cache has not written yet is written first."""
        self.flush()
        with self._errors("read"), self._engine.connect() as connection:
            return run_stats(connection)

    def clear(
        self,
        *,
        older_than: float | None = None,
        generator: str | None = None,
        run: str | None = None,
    ) -> int:
        """Delete kept answers: all of them, or those stored more than `older_than` seconds
        ago, by `generator` (its identifier as `jib cache` shows it, or as written for
        `get_generator`), or by `run`; the conditions given all apply. Returns how many were
        deleted."""
        self._known.forget()
        with self._errors("write to"), self._engine.connect() as connection:
            connection.execution_options(**WRITE)
            with connection.begin():
                return clear_answers(
                    connection, older_than=older_than, generator=generator, run=run
                )

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            original = getattr(exc, "orig", None) or exc
            first = str(original).strip().splitlines()[:1]
            raise StoreError(
                f"cannot {action} the response cache {self._url}: "
                f"{first[0] if first else type(original).__name__}"
            ) from exc


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")


def _joined(
    read: dict[tuple[str, int], CachedAnswer], unwritten: dict[tuple[str, int], CachedAnswer]
) -> dict[tuple[str, int], CachedAnswer]:
    if unwritten:
        read.update(unwritten)
    return read


def _flat(rows: list[tuple[Any, ...]]) -> list[Any]:
    return list(chain.from_iterable(rows))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _list_price(generator: Generator, usage: Usage) -> float | None:
    return generator.list_price(usage)
