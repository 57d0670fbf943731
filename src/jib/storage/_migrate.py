"""Bringing a database to `SCHEMA_VERSION`: create the tables, or run the migrations, or refuse.

See `jib.storage._schema` for the schema and the migration story. Everything here runs inside
one write transaction the caller opens (SQLite: `BEGIN IMMEDIATE`), and on PostgreSQL under an
advisory lock too, so processes opening a store at once never create or migrate it twice.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, inspect, select, text, update

from jib.storage._errors import StoreError
from jib.storage._schema import MIGRATIONS, SCHEMA_VERSION, metadata, schema_version

__all__ = ["current_version", "upgrade"]

_PG_LOCK_KEY = 0x6A6962  # "jib": serializes schema creation/migration across processes


def current_version(connection: Connection) -> int | None:
    """The schema version the database holds, or `None` when it has no jib tables yet."""
    if not inspect(connection).has_table(schema_version.name):
        return None
    version = connection.execute(select(schema_version.c.version)).scalar()
    return None if version is None else int(version)


def upgrade(connection: Connection, *, store: str) -> None:
    """Create the schema in an empty database, or migrate an older one to `SCHEMA_VERSION`.

    Args:
        connection: a connection inside a write transaction.
        store: the store's URL (password masked), for error messages.

    Raises:
        StoreError: the database is newer than this jib, or no migration leads from its version.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    version = current_version(connection)
    if version is None:
        metadata.create_all(connection)
        connection.execute(insert(schema_version).values(version=SCHEMA_VERSION))
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {store} has schema version {version}, newer than this jib "
            f"supports ({SCHEMA_VERSION}); upgrade jib to use it"
        )
    while version < SCHEMA_VERSION:
        migration = MIGRATIONS.get(version)
        if migration is None:
            raise StoreError(
                f"the store {store} has schema version {version} and this jib has no migration "
                f"from it to {SCHEMA_VERSION} (a bug in jib: please report it)"
            )
        migration(connection)
        version += 1
    connection.execute(update(schema_version).values(version=version))
