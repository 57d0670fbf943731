"""Database engines for the store: SQLite set up for several writers, PostgreSQL via psycopg.

SQLite: the file's folder is created on first use; every connection uses WAL journaling (readers
never block the writer), a busy timeout (a writer waits for another instead of failing), and
write transactions start with `BEGIN IMMEDIATE` so two processes writing one file queue up
rather than deadlock. PostgreSQL: `postgresql+psycopg://` URLs, connections checked before use.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from jib.errors import MissingDependencyError
from jib.storage._errors import StoreError

__all__ = [
    "BUSY_TIMEOUT_PRAGMA",
    "BUSY_TIMEOUT_SECONDS",
    "WRITE",
    "create_store_engine",
    "redacted_url",
]

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite writer waits for another writer before giving up."""
BUSY_TIMEOUT_PRAGMA = f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}"
"""Sets a SQLite connection's busy timeout to `BUSY_TIMEOUT_SECONDS` (as jib opens them)."""

WAL_CHECKPOINT_PAGES = 10_000
"""A SQLite store's write-ahead log is copied into the database (and synced) when it reaches
this many pages (~40 MB) rather than SQLite's 1,000: a run's saves each touch pages all over the
record id index (ids are random), and checking those in every 4 MB cost a bulk run more wall
time in syncs than its inserts did. The log is emptied when the last connection closes."""

WRITE = {"jib_write": True}
"""Execution options marking a connection whose transaction writes (`BEGIN IMMEDIATE`)."""


def redacted_url(url: str | URL) -> str:
    """`url` as text with its password masked."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<invalid database URL>"
    return parsed.render_as_string(hide_password=True)


def create_store_engine(url: str) -> Engine:
    """An engine for a store URL (see the module docs for what is set up per backend).

    Raises:
        StoreError: the URL is malformed or names an unsupported database.
        MissingDependencyError: PostgreSQL is asked for but psycopg is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{url!r} is not a database URL; expected a file path, sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise StoreError(
        f"unsupported store {redacted_url(parsed)}: jib stores chats in SQLite or PostgreSQL"
    )


def _sqlite_engine(url: URL) -> Engine:
    if url.drivername != "sqlite":
        url = url.set(drivername="sqlite")
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for the store {path}: {exc}") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, so it can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(BUSY_TIMEOUT_PRAGMA)
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a process crash never loses a committed transaction.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get("jib_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    try:
        return create_engine(url, pool_pre_ping=True)
    except (ImportError, NoSuchModuleError) as exc:
        if url.drivername == "postgresql+psycopg":
            raise MissingDependencyError(
                "psycopg", "postgres", "Storing chats in PostgreSQL"
            ) from exc
        raise StoreError(f"cannot use {redacted_url(url)}: {exc}") from None
