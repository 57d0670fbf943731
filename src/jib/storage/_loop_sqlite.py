"""A SQLite connection kept for short work done on the event loop's own thread.

Python's sqlite3 lets go of the GIL around every step of a statement, so SQLite work handed to a
worker thread makes that thread and the event loop take the GIL in turns (a futex call and a
context switch each time): a lookup by primary key in a local file costs less than the hop. So
short, bounded SQLite work (a lookup of one batch's keys, a slice of writes) is done on the loop,
on one connection kept for it.

That connection never waits for a lock (its busy timeout is 0): when another process holds the
write lock, the statement fails at once with `Busy` and the caller does the work in a worker
thread instead, on a pooled connection that waits as long as the store's busy timeout allows.
The loop itself never blocks on another process.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import SingletonThreadPool

from jib.storage._engine import BUSY_TIMEOUT_PRAGMA

__all__ = ["Busy", "LoopConnection", "is_busy"]

_BUSY_CODES = frozenset({5, 6})
"""`SQLITE_BUSY`, `SQLITE_LOCKED` (the module names them from Python 3.11 on)."""


class Busy(Exception):
    """Another connection holds a lock this work needs: do it elsewhere (in a thread)."""


def is_busy(error: sqlite3.Error) -> bool:
    """Whether `error` says a lock is held by another connection (`SQLITE_BUSY`, `LOCKED`)."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11 on
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    text = str(error)
    return "database is locked" in text or "database table is locked" in text


class LoopConnection:
    """One SQLite connection out of `engine`'s pool, kept for the thread that first asks for it
    (the event loop's); see the module docstring. `get()` from any other thread is `None`, and
    always for an in-memory database (whose pool keeps one connection per thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._proxy: Any = None
        self._connection: sqlite3.Connection | None = None
        self._thread: int | None = None

    def get(self, *, open_: bool = True) -> sqlite3.Connection | None:
        """The kept connection when the calling thread is its thread, else `None`; opened for
        the calling thread when none is kept yet, unless `open_` is false.

        Raises:
            sqlite3.Error, sqlalchemy.exc.SQLAlchemyError: it could not be opened.
        """
        thread = threading.get_ident()
        if self._thread is None:
            if not open_:
                return None
            with self._lock:
                if self._thread is None and isinstance(self._engine.pool, SingletonThreadPool):
                    self._thread = -1  # an in-memory database: one connection per thread
                if self._thread is None:
                    proxy = self._engine.raw_connection()
                    connection = proxy.driver_connection
                    if not isinstance(connection, sqlite3.Connection):  # a wrapped driver
                        proxy.close()
                        self._thread = -1
                        return None
                    connection.execute("PRAGMA busy_timeout = 0")
                    self._proxy, self._connection = proxy, connection
                    self._thread = thread
        return self._connection if self._thread == thread else None

    def close(self) -> None:
        """Give the connection back to the pool as the pool made it (its busy timeout too)."""
        with self._lock:
            proxy, connection = self._proxy, self._connection
            self._proxy = self._connection = None
            self._thread = None
        if proxy is None or connection is None:
            return
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.execute(BUSY_TIMEOUT_PRAGMA)
        except sqlite3.Error:
            proxy.invalidate()
        finally:
            proxy.close()
