"""Provider batches in the store: `jib run --batch-api`'s journal (see `jib.batch_api`).

One row per provider batch, written as soon as the provider accepts it, before anything waits
on it: which run and generator it serves, the provider and endpoint (a base URL, never a key),
the batch's id and its input file's, the custom ids of its requests, its last known status, and
whether its results are kept. `jib run --resume` reads a run's uncollected rows and polls those
batches instead of submitting their requests again; `jib batches` lists and cancels them.

The table `jib_provider_batches` is created on first use, in the same transaction as the first
write (`CREATE TABLE IF NOT EXISTS`), on its own `MetaData`: it is additive, an older jib
ignores it, and it needs no schema version of its own.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    update,
)

from jib.batch_api._journal import JournalEntry
from jib.storage._schema import JSONDocument, UTCDateTime

if TYPE_CHECKING:
    from jib.storage.store import ChatStore

__all__ = ["ProviderBatchJournal", "provider_batches"]

_metadata = MetaData()

provider_batches = Table(
    "jib_provider_batches",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("run", String(255), nullable=True),
    Column("generator_id", Text, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("batch_id", String(255), nullable=False),
    Column("input_file_id", String(255), nullable=True),
    Column("custom_ids", JSONDocument(), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("status", String(64), nullable=False),
    Column("collected", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_jib_provider_batches_run", "run", "collected"),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ProviderBatchJournal:
    """The `jib.batch_api.Journal` kept in a `ChatStore` (see the module docstring)."""

    def __init__(self, store: ChatStore) -> None:
        self._store = store
        self._ready = False

    def _ensure(self, connection: Connection) -> None:
        if not self._ready:
            provider_batches.create(connection, checkfirst=True)
            self._ready = True

    def _exists(self) -> bool:
        if self._ready:
            return True
        with self._store._read() as connection:
            self._ready = inspect(connection).has_table(provider_batches.name)
        return self._ready

    # -- the journal ----------------------------------------------------------------------------

    def uncollected(self, generator_id: str, run: str | None) -> list[JournalEntry]:
        """The batches of this generator and run whose results are not all kept yet."""
        return [
            entry
            for entry in self.entries(run=run, collected=False)
            if entry.generator_id == generator_id
        ]

    def submitted(self, entry: JournalEntry) -> None:
        """Write a new batch (one transaction, committed before this returns)."""
        with self._store._write() as connection:
            self._ensure(connection)
            connection.execute(
                insert(provider_batches).values(
                    key=entry.key,
                    run=entry.run,
                    generator_id=entry.generator_id,
                    provider=entry.provider,
                    endpoint=entry.endpoint,
                    batch_id=entry.batch_id,
                    input_file_id=entry.input_file_id,
                    custom_ids=list(entry.custom_ids),
                    requests=len(entry.custom_ids),
                    status=entry.status,
                    collected=entry.collected,
                    created_at=entry.created_at,
                    updated_at=entry.updated_at,
                )
            )

    def update(self, key: str, status: str) -> None:
        """Write a batch's latest status."""
        self._set(key, status=status)

    def collected(self, key: str) -> None:
        """Mark a batch's results as kept."""
        self._set(key, collected=True)

    def _set(self, key: str, **values: Any) -> None:
        with self._store._write() as connection:
            self._ensure(connection)
            connection.execute(
                update(provider_batches)
                .where(provider_batches.c.key == key)
                .values(updated_at=_now(), **values)
            )

    # -- reading --------------------------------------------------------------------------------

    def entries(
        self, *, run: str | None = None, collected: bool | None = None, batch_id: str | None = None
    ) -> list[JournalEntry]:
        """The batches written down, oldest first (of one run, collected or not, one id)."""
        if not self._exists():
            return []
        query = select(provider_batches).order_by(provider_batches.c.seq)
        if run is not None:
            query = query.where(provider_batches.c.run == run)
        if collected is not None:
            query = query.where(provider_batches.c.collected == collected)
        if batch_id is not None:
            query = query.where(provider_batches.c.batch_id == batch_id)
        with self._store._read() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            JournalEntry(
                key=row["key"],
                run=row["run"],
                generator_id=row["generator_id"],
                provider=row["provider"],
                endpoint=row["endpoint"],
                batch_id=row["batch_id"],
                input_file_id=row["input_file_id"],
                custom_ids=list(row["custom_ids"]),
                status=row["status"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                collected=bool(row["collected"]),
            )
            for row in rows
        ]
