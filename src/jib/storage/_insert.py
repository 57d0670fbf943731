"""Inserting rows at the driver's pace: one prepared statement, sent with `executemany`, or COPY.

SQLAlchemy Core processes each parameter of each row in Python before the driver sees it, which
costs more per record than making the row. Saving therefore hands rows already encoded (see
`jib.storage._encode`) straight to the driver through `Connection.exec_driver_sql`, inside the
save's transaction and under SQLAlchemy's error handling; schema, migrations and queries stay
with SQLAlchemy. PostgreSQL takes the rows with `COPY … FROM STDIN` instead (a third of
`executemany`'s client time), in the same transaction; it reads the JSON text of `jsonb` columns
as their type, so the server checks it as it always did. Each statement is written once per
process (`_STATEMENTS`, a bounded cache: the module's only state).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError

from jib.storage._schema import records, tags

__all__ = ["RECORD_COLUMNS", "TAG_COLUMNS", "insert_records", "insert_rows", "insert_tags"]

RECORD_COLUMNS: tuple[str, ...] = tuple(c.name for c in records.c if c.name != "seq")
"""The columns of a `jib_records` row as saving makes it (the order of its values)."""

TAG_COLUMNS: tuple[str, ...] = ("record_id", "tag")
"""The columns of a `jib_tags` row."""


_STATEMENTS: dict[tuple[str, str, tuple[str, ...], frozenset[str]], str] = {}
_MOST_STATEMENTS = 256
"""A bound on `_STATEMENTS`: there is one per set of columns left empty, and few such sets."""


def _statement(
    dialect: Dialect, table: Table, columns: tuple[str, ...], empty: frozenset[str]
) -> str:
    """SQLite's `INSERT INTO table (columns) VALUES (?, …)`, with a literal `NULL` for the
    `empty` columns."""
    key = (dialect.name, table.name, columns, empty)
    found = _STATEMENTS.get(key)
    if found is None:
        if len(_STATEMENTS) >= _MOST_STATEMENTS:
            _STATEMENTS.clear()
        found = _STATEMENTS[key] = _written_statement(dialect, table, columns, empty)
    return found


def _written_statement(
    dialect: Dialect, table: Table, columns: tuple[str, ...], empty: frozenset[str]
) -> str:
    preparer = dialect.identifier_preparer
    values = ["NULL" if name in empty else "?" for name in columns]
    names = ", ".join(preparer.format_column(table.c[name]) for name in columns)
    return f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({', '.join(values)})"


def insert_rows(
    connection: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (values in the order of `columns`, encoded for the driver) into `table`.

    A column empty (`None`) in every row is written as a literal `NULL` rather than sent: SQLite's
    driver takes several times longer to bind a `None` than a number or a text.
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _copy(connection, table, columns, rows)
        return
    empty = {index for index in range(len(columns)) if _empty_in_all(rows, index)}
    if empty:
        kept = [index for index in range(len(columns)) if index not in empty]
        pick = itemgetter(*kept)
        rows = [pick(row) for row in rows] if len(kept) > 1 else [(pick(row),) for row in rows]
    names = frozenset(columns[index] for index in empty)
    connection.exec_driver_sql(_statement(connection.dialect, table, columns, names), list(rows))


def _copy(
    connection: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """PostgreSQL: `COPY … FROM STDIN` on the transaction's own connection; a database error
    is raised as SQLAlchemy raises it."""
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.format_column(table.c[name]) for name in columns)
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    dbapi_error: type[Exception] = connection.dialect.loaded_dbapi.Error
    driver: Any = connection.connection.dbapi_connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi_error as exc:
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, hide_parameters=True, dialect=connection.dialect
        ) from exc


def _empty_in_all(rows: Sequence[tuple[Any, ...]], index: int) -> bool:
    if rows[0][index] is not None:
        return False
    return list(map(itemgetter(index), rows)).count(None) == len(rows)


def insert_records(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `jib_records` rows (values in `RECORD_COLUMNS` order)."""
    insert_rows(connection, records, RECORD_COLUMNS, rows)


def insert_tags(connection: Connection, rows: Sequence[tuple[str, str]]) -> None:
    """Insert `jib_tags` rows: `(record_id, tag)`."""
    insert_rows(connection, tags, TAG_COLUMNS, rows)
