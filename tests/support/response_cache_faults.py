"""Damage to a response cache done from outside, as another process (or a full disk) would:
SQL on a connection of its own, never a patch of jib."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

__all__ = ["execute", "refuse_cache_writes"]


def execute(url: str, *statements: str, **values: Any) -> None:
    """Run `statements` (bound to `values`) in one transaction on a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement), values)
    finally:
        engine.dispose()


def refuse_cache_writes(url: str) -> None:
    """Every answer written to the response cache at `url` from now on fails with "the disk is
    full" (a trigger on its table), while lookups still work: a cache whose writes fail."""
    if url.startswith("postgresql"):
        execute(
            url,
            "CREATE OR REPLACE FUNCTION jib_test_refuse() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'the disk is full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER jib_test_refuse BEFORE INSERT ON jib_response_cache "
            "FOR EACH ROW EXECUTE FUNCTION jib_test_refuse()",
        )
    else:
        execute(
            url,
            "CREATE TRIGGER jib_test_refuse BEFORE INSERT ON jib_response_cache "
            "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
        )
