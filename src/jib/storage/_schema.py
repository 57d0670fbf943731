"""The database schema (SQLAlchemy Core), its version, and the migrations between versions.

One schema serves SQLite and PostgreSQL alike:

- `jib_schema_version`: one row holding the schema version of the database.
- `jib_records`: one row per chat or completion. The record's own JSON form (`to_dict`) is
  spread over typed columns for what is queried (run, model, failed, time, tokens) and JSON
  columns for the rest (params, messages, metadata).
- `jib_tags`: one row per (record, tag), so a tag query uses an index on every backend.
- `jib_blobs`: the bytes of inline content parts (images, audio, documents), one row per
  content, keyed by its SHA-256, with the number of records that refer to it: a record's
  messages hold `jib-blob:` references (see `jib._part_data` and `jib.storage._blobs`) instead
  of the data, so a thousand chats sending one image store it once.

Migration story (carried out by `jib.storage._migrate`): `SCHEMA_VERSION` is the version this
code writes. Opening a store creates the tables in an empty database; a database at an older
version is brought up to date by running `MIGRATIONS[v]` (v → v+1) for each step, all in the
same transaction as the version bump, under a lock (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
advisory lock) so two processes never migrate at once. A version with no migration from it is
refused with a `StoreError` (a test keeps `MIGRATIONS` complete).
A database newer than this code is refused with a `StoreError` telling the user to upgrade jib.
A schema change therefore ships as: new columns/tables in `tables`, `SCHEMA_VERSION` + 1, and a
function in `MIGRATIONS` that changes an existing database the same way.

Versions: 1, the first schema; 2 adds `prompt_id`, `sample_index` (where a record of a run came
from in its dataset), `latency_ms`, `cost_usd` and `attempts`, all nullable; 3 adds the table
`jib_blobs` and the nullable columns `output` (a chat's structured output),
`cached_input_tokens`, `cache_write_tokens` and `reasoning_tokens`; 4 drops the index on
(`run`, `input_key`): no query used it past its `run` prefix (which the index on run, prompt id
and sample serves), and its random hashes put every insert on another page of it, which made
saving slower.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "JSONDocument",
    "blobs",
    "metadata",
    "records",
    "schema_version",
    "tags",
]

SCHEMA_VERSION = 4
"""The schema version this code reads and writes (the history is in `MIGRATIONS`)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JSONDocument(TypeDecorator[Any]):
    """JSON, kept as `JSONB` on PostgreSQL, as `JSON` (text) elsewhere.

    What `JSON().with_variant(JSONB(), "postgresql")` declares, but SQLAlchemy's PostgreSQL
    dialect (all its drivers' modules) is imported only when a PostgreSQL database is used, not
    by every SQLite store. `none_as_null`: Python `None` is SQL NULL, not JSON `null`.
    """

    impl = JSON
    cache_ok = True

    def __init__(self, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        self.none_as_null = none_as_null

    @property
    def should_evaluate_none(self) -> bool:  # type: ignore[override]
        """`None` is written as JSON `null` unless `none_as_null` (as `JSON` does)."""
        return not self.none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=self.none_as_null))
        return dialect.type_descriptor(JSON(none_as_null=self.none_as_null))


_JSON = JSONDocument()
# Python `None` as SQL NULL (not JSON `null`): a column that is often empty.
_JSON_OR_NULL = JSONDocument(none_as_null=True)

metadata = MetaData()

schema_version = Table(
    "jib_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

records = Table(
    "jib_records",
    metadata,
    # Insertion order: the tie-breaker for records made in the same microsecond.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("run", String(255), nullable=True),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("generator_id", Text, nullable=True),
    Column("provider", String(255), nullable=True),
    Column("model", String(512), nullable=True),
    Column("input_key", String(64), nullable=False),
    Column("params", _JSON, nullable=True),
    Column("input", _JSON, nullable=False),
    Column("generated", _JSON, nullable=False),
    Column("stop_reason", String(32), nullable=False),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("total_tokens", Integer, nullable=True),
    Column("failed", Boolean, nullable=False),
    Column("error_type", String(255), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("meta", _JSON, nullable=False),
    Column("extra", _JSON, nullable=False),
    Column("record_version", Integer, nullable=False),
    # Version 2: where a record of a run came from, and what it took.
    Column("prompt_id", String(255), nullable=True),
    Column("sample_index", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("cost_usd", Float, nullable=True),
    Column("attempts", Integer, nullable=True),
    # Version 3: the structured output, and the cache and reasoning token counts.
    Column("output", _JSON_OR_NULL, nullable=True),
    Column("cached_input_tokens", Integer, nullable=True),
    Column("cache_write_tokens", Integer, nullable=True),
    Column("reasoning_tokens", Integer, nullable=True),
    Index("ix_jib_records_run_prompt", "run", "prompt_id", "sample_index"),
    Index("ix_jib_records_timestamp", "timestamp"),
    Index("ix_jib_records_model", "model"),
    Index("ix_jib_records_failed", "failed"),
)

tags = Table(
    "jib_tags",
    metadata,
    Column("record_id", String(64), ForeignKey("jib_records.id"), primary_key=True),
    Column("tag", String(255), primary_key=True),
    Index("ix_jib_tags_tag", "tag"),
)

blobs = Table(
    "jib_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    # How many records refer to it: a count, not a table of links, so a record costs no more
    # for its parts than its references (the store's own size is an acceptance figure).
    Column("refs", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

Migration = Callable[[Connection], Any]

_RUN_INPUT_INDEX = "ix_jib_records_run_input"
"""The index versions 1–3 had on (run, input_key)."""


def _add_columns(connection: Connection, table: Table, names: list[str]) -> None:
    """`ALTER TABLE … ADD COLUMN` for each of `names`, typed as `table` declares them."""
    preparer = connection.dialect.identifier_preparer
    for name in names:
        column = table.c[name]
        kind = column.type.compile(dialect=connection.dialect)
        connection.execute(
            text(
                f"ALTER TABLE {preparer.format_table(table)} "
                f"ADD COLUMN {preparer.format_column(column)} {kind}"
            )
        )


def _to_version_2(connection: Connection) -> None:
    """Version 1 → 2: the prompt id and sample index of a run's records, latency, cost, attempts.

    Every new column is nullable, so existing records keep their meaning (unknown).
    """
    _add_columns(
        connection,
        records,
        ["prompt_id", "sample_index", "latency_ms", "cost_usd", "attempts"],
    )
    next(i for i in records.indexes if i.name == "ix_jib_records_run_prompt").create(connection)


def _to_version_3(connection: Connection) -> None:
    """Version 2 → 3: blobs for the inline data of content parts, the structured output, and
    the cache and reasoning token counts.

    Existing records hold no parts (their messages are text), so nothing is moved: the new
    tables start empty and the new columns are nullable.
    """
    _add_columns(
        connection,
        records,
        ["output", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"],
    )
    blobs.create(connection)


def _to_version_4(connection: Connection) -> None:
    """Version 3 → 4: drop the index on (run, input_key), which only slowed saving."""
    connection.execute(text(f"DROP INDEX IF EXISTS {_RUN_INPUT_INDEX}"))


MIGRATIONS: dict[int, Migration] = {1: _to_version_2, 2: _to_version_3, 3: _to_version_4}
"""`MIGRATIONS[v](connection)` upgrades a database from version `v` to `v + 1`."""
