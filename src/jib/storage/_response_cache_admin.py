"""What `jib cache` and `jib runs` read from the response cache, and clearing it: a summary per
generator, counts per run, deletes by age, generator and run. Each function works on a
connection its caller opened (`ResponseCache` holds the engine and the error handling)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, delete, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from jib.storage._engine import create_store_engine
from jib.storage._location import default_store_url, to_database_url
from jib.storage._response_cache_tables import ResponseCacheStats, entries, stats

__all__ = ["clear_answers", "generator_names", "response_cache_run_stats", "run_stats", "summary"]


def summary(connection: Connection) -> list[dict[str, Any]]:
    """Per generator, by identifier: `generator`, `entries`, `bytes`, `oldest`, `newest`
    (epoch seconds), `hits`, `misses` and `saved_usd` (over every run)."""
    by_generator: dict[str, dict[str, Any]] = {}
    for generator, count, size, oldest, newest in connection.execute(
        select(
            entries.c.generator,
            func.count(),
            func.coalesce(func.sum(entries.c.size), 0),
            func.min(entries.c.created_at),
            func.max(entries.c.created_at),
        ).group_by(entries.c.generator)
    ):
        by_generator[generator] = {
            "generator": generator,
            "entries": int(count),
            "bytes": int(size),
            "oldest": oldest,
            "newest": newest,
            "hits": 0,
            "misses": 0,
            "saved_usd": 0.0,
        }
    for generator, hits, misses, saved in connection.execute(
        select(
            stats.c.generator,
            func.sum(stats.c.hits),
            func.sum(stats.c.misses),
            func.sum(stats.c.saved_usd),
        ).group_by(stats.c.generator)
    ):
        row = by_generator.setdefault(
            generator,
            {"generator": generator, "entries": 0, "bytes": 0, "oldest": None, "newest": None},
        )
        row.update(hits=int(hits or 0), misses=int(misses or 0), saved_usd=saved or 0.0)
    return sorted(by_generator.values(), key=lambda row: row["generator"])


def run_stats(connection: Connection) -> dict[str, ResponseCacheStats]:
    """Hits, misses and saved cost per run (all generators summed)."""
    result: dict[str, ResponseCacheStats] = {}
    for run, hits, misses, saved in connection.execute(
        select(
            stats.c.run,
            func.sum(stats.c.hits),
            func.sum(stats.c.misses),
            func.sum(stats.c.saved_usd),
        ).group_by(stats.c.run)
    ):
        result[run] = ResponseCacheStats(int(hits or 0), int(misses or 0), saved or 0.0)
    return result


def clear_answers(
    connection: Connection,
    *,
    older_than: float | None = None,
    generator: str | None = None,
    run: str | None = None,
) -> int:
    """Delete kept answers (all, or those matching every condition given); how many. Clearing
    everything clears the counts too. `generator` is an identifier, written as given or any
    other way that names the same generator (`generator_names`)."""
    conditions = []
    if older_than is not None:
        conditions.append(entries.c.created_at < time.time() - older_than)
    if generator is not None:
        conditions.append(entries.c.generator.in_(generator_names(generator)))
    if run is not None:
        conditions.append(entries.c.run == run)
    statement = delete(entries)
    if conditions:
        statement = statement.where(and_(*conditions))
    deleted = connection.execute(statement).rowcount or 0
    if not conditions:
        connection.execute(delete(stats))
    return int(deleted)


def generator_names(identifier: str) -> list[str]:
    """The names a generator may have in the cache: `identifier` as given, and as the cache
    writes it (`to_identifier()`: options in order, spaces gone, `env:` references kept as
    they are, the key left out), so `jib cache clear --generator` takes an identifier as the
    user wrote it for `jib run`, not only as `jib cache` shows it."""
    from jib.errors import JibError
    from jib.identifiers import get_generator

    names = [identifier]
    try:
        written = get_generator(identifier).to_identifier()
    except (JibError, ValueError, TypeError, OSError):  # not one jib can read: as given only
        return names
    if written != identifier:
        names.append(written)
    return names


def response_cache_run_stats(url: str | None = None) -> dict[str, ResponseCacheStats]:
    """Hits, misses and saved cost per run of the response cache in the database at `url`
    (`None`: the default store); empty when it holds no response cache. Creates nothing."""
    location = default_store_url() if url is None else to_database_url(str(url))
    engine = create_store_engine(location)
    try:
        try:
            if not inspect(engine).has_table(stats.name):
                return {}
        except SQLAlchemyError:
            return {}
        with engine.connect() as connection:
            return run_stats(connection)
    finally:
        engine.dispose()
