"""`ChatStore`: save, query, load and export chats and completions in SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from typing_extensions import Unpack

from jib.chat import Chat, Completion
from jib.storage import _export
from jib.storage._blobs import (
    StoredBlobs,
    changes_between,
    count_changes,
    references_by_record,
    stored_references,
)
from jib.storage._decode import RAW_COLUMNS
from jib.storage._encode import UnencodableValue, text
from jib.storage._engine import BUSY_TIMEOUT_PRAGMA, WRITE, create_store_engine, redacted_url
from jib.storage._errors import StoreError
from jib.storage._insert import insert_records, insert_tags
from jib.storage._load import readable_dicts, readable_records, stored_dict, stored_record
from jib.storage._location import default_store_url, to_database_url
from jib.storage._loop_sqlite import Busy, is_busy
from jib.storage._migrate import current_version, upgrade
from jib.storage._query import (
    Filter,
    FilterArgs,
    Kind,
    StoredResult,
    find_row,
    run_summaries,
    stored_results,
)
from jib.storage._rows import Record, SaveBatch, rows_to_save
from jib.storage._schema import SCHEMA_VERSION, records
from jib.storage._schema import tags as tags_table
from jib.trust import TrustPolicy

if TYPE_CHECKING:
    import pandas

__all__ = ["ON_LOOP_MOST", "ChatStore", "open_store"]

_CHUNK = 500
ON_LOOP_MOST = 250
"""The most records an `asave` into SQLite writes on the event loop itself (see `asave`)."""


def open_store(url: str | Path | None = None, *, trusted: bool | TrustPolicy = False) -> ChatStore:
    """Open (creating on first use) the store at `url`.

    Args:
        url: a database URL (`sqlite:///PATH`, `postgresql+psycopg://USER@HOST/DB`), a SQLite file
            path, or `None` for the default: `$JIB_STORE`, else a `jib.db` in the user's data
            folder (see `jib.storage.default_store_path`).
        trusted: how far to trust the stored identifiers when loading records rebuilds their
            generators: by default they are data (`TrustPolicy.from_env()`; see `jib.trust`);
            pass a `TrustPolicy` to allow more, or `True` for a store only you write to.

    Raises:
        StoreError: the database cannot be reached, or its schema is newer than this jib (or
            at a version this jib has no migration from).
    """
    if url is None:
        return ChatStore(default_store_url(), trusted=trusted)
    return ChatStore(to_database_url(str(url)), trusted=trusted)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _short_error(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


class ChatStore:
    """Chats and completions in one database: SQLite (one file) or PostgreSQL.

    Every `save` is one transaction, so a crash leaves whole records or none. Several processes
    may write at once (SQLite: WAL and a busy timeout; PostgreSQL: row-level concurrency).
    Use `open_store()` to open one; a store is also a context manager that closes it.
    """

    def __init__(self, url: str, *, trusted: bool | TrustPolicy = False) -> None:
        self._trusted = trusted
        self._engine = create_store_engine(url)
        self._url = redacted_url(self._engine.url)
        self._backend = self._engine.url.get_backend_name()
        self._write_lock = threading.Lock()
        with self._errors("open"):
            self._ensure_schema()

    # -- identity ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._url

    @property
    def backend(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self._backend

    @property
    def path(self) -> Path | None:
        """The SQLite file, or `None` for PostgreSQL and in-memory stores."""
        database = self._engine.url.database
        if self._backend != "sqlite" or not database or database == ":memory:":
            return None
        return Path(database)

    def __repr__(self) -> str:
        return f"ChatStore({self._url!r})"

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {action} the store {self._url}: {_short_error(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with (
            self._errors("write to"),
            self._write_lock,
            self._engine.connect() as connection,
        ):
            connection.execution_options(**WRITE)
            with connection.begin():
                yield connection

    @contextmanager
    def _write_at_once(self) -> Iterator[Connection]:
        """SQLite's write transaction, or `Busy` at once (rather than waiting) when another
        writer, in this process or another, holds the store."""
        if not self._write_lock.acquire(blocking=False):
            raise Busy
        try:
            with self._errors("write to"), self._engine.connect() as connection:
                connection.execution_options(**WRITE)
                driver = connection.connection.dbapi_connection
                assert driver is not None
                driver.execute("PRAGMA busy_timeout = 0")
                try:
                    transaction = connection.begin()
                except OperationalError as exc:
                    if isinstance(exc.orig, sqlite3.Error) and is_busy(exc.orig):
                        raise Busy from None
                    raise
                finally:
                    driver.execute(BUSY_TIMEOUT_PRAGMA)
                with transaction:
                    yield connection
        finally:
            self._write_lock.release()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors("read"), self._engine.connect() as connection:
            yield connection

    def _ensure_schema(self) -> None:
        with self._engine.connect() as connection:
            if current_version(connection) == SCHEMA_VERSION:
                return
        with self._write() as connection:
            upgrade(connection, store=self._url)

    @property
    def schema_version(self) -> int:
        """The schema version of the database (see `jib.storage._schema` for migrations)."""
        with self._read() as connection:
            return current_version(connection) or 0

    # -- writing -------------------------------------------------------------------------------

    def save(
        self,
        items: Record | Iterable[Record],
        *,
        run: str | None = None,
        tags: Sequence[str] = (),
        replacing: Iterable[str] = (),
    ) -> int:
        """Store chats/completions in one transaction; return how many.

        Saving a record again (same id) replaces the stored copy.

        Args:
            items: one record or several.
            run: the run they belong to; default: each record's `metadata["run"]`, if any.
            tags: tags added to each record's `metadata["tags"]` (queryable with `tag=`).
            replacing: ids of stored records these replace (a retried failure, say): they are
                deleted in the same transaction.
        """
        batch = [items] if isinstance(items, (Chat, Completion)) else list(items)
        if not batch:
            return 0
        return self._write_saved(self._encode(batch, run=run, tags=tags), replacing)

    def _encode(self, batch: list[Any], *, run: str | None, tags: Sequence[str]) -> SaveBatch:
        """The rows of `batch`, encoded for the driver (Python work, no database)."""
        try:
            return rows_to_save(batch, run=run, tags=tags, stored_at=_now(), backend=self._backend)
        except UnencodableValue as exc:
            raise StoreError(f"cannot write to the store {self._url}: {exc}") from exc

    def _write_saved(
        self, saved: SaveBatch, replacing: Iterable[str], *, at_once: bool = False
    ) -> int:
        """Write encoded rows in one transaction (deleting what they replace); return how many.

        With `at_once` (SQLite), raise `Busy` rather than wait for another writer.
        """
        replaced_ids = list(dict.fromkeys(text(i) for i in replacing))
        ids = list(dict.fromkeys([*saved.rows, *replaced_ids]))
        tag_rows = [(i, t) for i, ts in saved.tags.items() for t in ts]
        with self._write_at_once() if at_once else self._write() as connection:
            stored = references_by_record(connection, ids)
            # A new id has no row to delete; its tags only if a record was deleted by hand.
            self._delete_rows(
                connection,
                list(stored),
                tag_ids=list(dict.fromkeys([*stored, *replaced_ids, *(i for i, _ in tag_rows)])),
            )
            insert_records(connection, list(saved.rows.values()))
            insert_tags(connection, tag_rows)
            replaced: Counter[str] = Counter()
            for used in stored.values():
                replaced.update(used)
            changes = changes_between(replaced, saved.references.values())
            count_changes(connection, changes, saved.blobs.blobs)
        return len(saved.rows)

    @staticmethod
    def _delete_rows(
        connection: Connection, ids: list[str], *, tag_ids: list[str] | None = None
    ) -> int:
        """Delete these records and their tags (and the tags of `tag_ids`, when given); return
        how many records were stored."""
        removed = 0
        tag_ids = ids if tag_ids is None else tag_ids
        for start in range(0, len(tag_ids), _CHUNK):
            chunk = tag_ids[start : start + _CHUNK]
            connection.execute(delete(tags_table).where(tags_table.c.record_id.in_(chunk)))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            removed += connection.execute(delete(records).where(records.c.id.in_(chunk))).rowcount
        return removed

    async def asave(
        self,
        items: Record | Iterable[Record],
        *,
        run: str | None = None,
        tags: Sequence[str] = (),
        replacing: Iterable[str] = (),
    ) -> int:
        """`save` from async code, keeping the event loop running.

        The rows are encoded on the loop (Python work, which a thread could only do holding the
        interpreter lock the loop needs). A SQLite save of at most `ON_LOOP_MOST` records is then
        written on the loop too, in one go (a few milliseconds): handing it to a thread costs
        more, as the driver lets go of the interpreter lock for every row and the two threads
        trade it back and forth. Bigger SQLite saves, a SQLite save while another writer holds
        the store (the loop never waits for it), and PostgreSQL's (a round trip to the server)
        run in a worker thread.
        """
        batch = [items] if isinstance(items, (Chat, Completion)) else list(items)
        if not batch:
            return 0
        saved = self._encode(batch, run=run, tags=tags)
        replaced = list(replacing)
        if self._backend == "sqlite" and len(saved.rows) <= ON_LOOP_MOST:
            with suppress(Busy):  # another writer holds the store: wait for it in a thread
                return self._write_saved(saved, replaced, at_once=True)
        return await asyncio.to_thread(self._write_saved, saved, replaced)

    def watch(
        self, *, run: str | None = None, tags: Sequence[str] = ()
    ) -> Callable[[Sequence[Record]], Awaitable[int]]:
        """A pipeline `watch` callback that saves every finished record, failures included.

        chats = await generator.chat().watch(store.watch(run="eval")).run_batch(prompts)
        """
        tag_list = list(tags)

        async def save_finished(finished: Sequence[Record]) -> int:
            return await self.asave(finished, run=run, tags=tag_list)

        return save_finished

    def delete(self, ids: Iterable[str]) -> int:
        """Delete the records with these ids; return how many were stored."""
        id_list = list(dict.fromkeys(ids))
        with self._write() as connection:
            referred = stored_references(connection, id_list)
            removed = self._delete_rows(connection, id_list)
            count_changes(connection, changes_between(referred, []), {})
        return removed

    # -- reading -------------------------------------------------------------------------------

    @contextmanager
    def _rows(
        self, filter: Filter, *, newest_first: bool = False, limit: int | None = None
    ) -> Iterator[tuple[Iterator[dict[str, Any]], StoredBlobs]]:
        """Raw rows (see `jib.storage._decode`), streamed a chunk at a time, and the blobs their
        parts refer to (read through the same connection)."""
        statement = filter.select(newest_first=newest_first, limit=limit)
        statement = statement.with_only_columns(*RAW_COLUMNS)
        with self._read() as connection:
            result = connection.execution_options(yield_per=_CHUNK).execute(statement)
            yield (dict(row) for row in result.mappings()), StoredBlobs(connection)

    def iter_dicts(
        self,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        **filters: Unpack[FilterArgs],
    ) -> Iterator[dict[str, Any]]:
        """Stored records as dicts (`to_dict` form plus `run`), streamed in chunks.

        A record that cannot be read is skipped with an `UnreadableRecordWarning` naming it (see
        `query`); with `limit`, it still counts towards the limit.
        """
        with self._rows(Filter(**filters), newest_first=newest_first, limit=limit) as (rows, blobs):
            yield from readable_dicts(rows, self._backend, blobs)

    def iter_records(
        self,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        rebuild_generator: bool = True,
        **filters: Unpack[FilterArgs],
    ) -> Iterator[Record]:
        """Like `query`, but streamed: records are loaded a chunk at a time."""
        return self._records(
            Filter(**filters),
            newest_first=newest_first,
            limit=limit,
            rebuild_generator=rebuild_generator,
        )

    def _records(
        self,
        filter: Filter,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        rebuild_generator: bool = True,
    ) -> Generator[Record, None, None]:
        with self._rows(filter, newest_first=newest_first, limit=limit) as (rows, blobs):
            yield from readable_records(
                rows,
                self._backend,
                blobs,
                rebuild_generator=rebuild_generator,
                trusted=self._trusted,
            )

    def query(
        self,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        rebuild_generator: bool = True,
        **filters: Unpack[FilterArgs],
    ) -> list[Record]:
        """Load the records matching `filters` (see `Filter`), oldest first.

        One bad record never fails the query: a record that cannot be read (a column that is
        not what its type says, a record written by a newer jib) is skipped with an
        `UnreadableRecordWarning` naming its id and saying why; with `limit`, it still counts
        towards the limit.

        Args:
            newest_first: newest first instead.
            limit: at most this many.
            rebuild_generator: rebuild each record's generator from its identifier, under the
                store's trust policy. A record whose generator cannot be rebuilt here (a provider
                not registered, a value refused, an identifier the trust policy refuses, a spec
                that does not compile) is loaded without it, with a `GeneratorWarning` naming the
                record and the reason; nothing it asks for is run or sent.
        """
        return list(
            self.iter_records(
                newest_first=newest_first,
                limit=limit,
                rebuild_generator=rebuild_generator,
                **filters,
            )
        )

    def count(self, **filters: Unpack[FilterArgs]) -> int:
        """How many stored records match `filters`."""
        statement = select(func.count()).select_from(records).where(*Filter(**filters).conditions())
        with self._read() as connection:
            return int(connection.execute(statement).scalar_one())

    def get(self, record_id: str, *, rebuild_generator: bool = True) -> Record:
        """Load one record by id, or by a unique prefix of at least 4 characters of its id.

        A generator that cannot be rebuilt is left out, with a warning (see `query`).

        Raises:
            RecordNotFoundError: no record (or more than one) matches.
            UnreadableRecordError: the record cannot be read (the message says why).
        """
        with self._read() as connection:
            return stored_record(
                find_row(connection, record_id, columns=RAW_COLUMNS),
                self._backend,
                StoredBlobs(connection),
                rebuild_generator=rebuild_generator,
                trusted=self._trusted,
            )

    def get_dict(self, record_id: str) -> dict[str, Any]:
        """One record as a dict (`to_dict` form plus `run`); same lookup as `get`.

        Raises:
            RecordNotFoundError: no record (or more than one) matches.
            UnreadableRecordError: the record cannot be read (the message says why).
        """
        with self._read() as connection:
            raw = find_row(connection, record_id, columns=RAW_COLUMNS)
            return stored_dict(raw, self._backend, StoredBlobs(connection))

    def last(
        self, *, kind: Kind = "chat", failed: bool | None = False, rebuild_generator: bool = True
    ) -> Record | None:
        """The newest readable record of `kind` (by default only successful ones), or `None`.

        Newer records that cannot be read are skipped, each with an `UnreadableRecordWarning`.
        """
        found = self._records(
            Filter(kind=kind, failed=failed), newest_first=True, rebuild_generator=rebuild_generator
        )
        try:
            return next(found, None)
        finally:
            found.close()  # the rest is never read: give the connection back now

    def stored_results(self, run: str) -> list[StoredResult]:
        """What `run` holds, one entry per record: enough for `jib run --resume` to plan.

        Streamed from the database a chunk at a time; each entry is a few short strings.
        """
        with self._read() as connection:
            return stored_results(connection, run)

    def runs(self) -> list[dict[str, Any]]:
        """One summary per run, newest first.

        Each is a dict: `run`, `records` (every stored row of the run), `unreadable` (rows that
        cannot be read, as far as the database can tell; they are left out of the other
        figures), `failed`, `first` and `last` timestamps, `generators` (the generator
        identifiers, in the order they first appear), `cost_usd` (the sum of the known costs,
        `None` when no record has one) and `priced` (how many records have a cost).
        """
        with self._read() as connection:
            return run_summaries(connection)

    # -- exporting -----------------------------------------------------------------------------

    def export_jsonl(
        self,
        destination: _export.Destination,
        *,
        parts_as_files: bool = False,
        **filters: Unpack[FilterArgs],
    ) -> int:
        """Write matching records as JSON Lines (loadable by `Chat.from_jsonl`); return count.

        The data of images, audio and documents is written inline, as `data:` URLs (each line
        loads on its own, with `Chat.from_dict`), unless `parts_as_files` is true: then each
        content is written once, as a file in a folder beside the export (`r.jsonl` →
        `r.files/<sha256>.png`), and the lines refer to it by relative path (`jib-file:`
        references, which `Chat.from_jsonl(path)` reads back).

        Raises:
            StoreError: `parts_as_files` with a destination that is not a path.
        """
        if parts_as_files and not isinstance(destination, (str, Path)):
            raise StoreError(
                "parts_as_files writes files beside the export: give the export's path, not "
                "an open file"
            )
        return _export.write_jsonl(
            self.iter_dicts(**filters), destination, parts_as_files=parts_as_files
        )

    def export_csv(
        self,
        destination: _export.Destination,
        *,
        escape_formulas: bool = True,
        **filters: Unpack[FilterArgs],
    ) -> int:
        """Write matching records as CSV (`jib.storage.FLAT_COLUMNS`); return the count.

        A text cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a
        tab or a carriage return) gets a leading `'`, unless `escape_formulas` is false.
        """
        return _export.write_csv(
            self.iter_dicts(**filters), destination, escape_formulas=escape_formulas
        )

    def export_parquet(
        self, destination: _export.Destination, **filters: Unpack[FilterArgs]
    ) -> int:
        """Write matching records as Parquet (needs pyarrow: `jib[pandas]`); return the count."""
        return _export.write_parquet(self.iter_dicts(**filters), destination)

    def to_dataframe(self, **filters: Unpack[FilterArgs]) -> pandas.DataFrame:
        """Matching records as a pandas DataFrame (needs `jib[pandas]`), one row per record."""
        return _export.to_dataframe(self.iter_dicts(**filters))
