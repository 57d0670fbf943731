"""How much CPU `ChatStore.save` spends per chat on the bulk case, against a plain-insert floor.

Builds N echo chats offline (`echo!` from `jib.testing`), then saves them in chunks into a fresh
store (one `save` per chunk, as `jib run` does) and measures the CPU time of the saves alone
(`time.process_time()`). The floor is the least code that stores the same chats: each chat's
`to_json()` inserted as one row with the driver's `executemany`, one transaction per chunk.
Each measurement is repeated; the median and the range are printed.

    python benchmarks/store_save.py [--chats 10000] [--chunk 500] [--repeat 3]
        [--postgres postgresql+psycopg://USER@HOST/DB]

With `--postgres`, a scratch database is created on that server for the run and dropped after.

Goal (issue 19): `store.save` at most 60 µs of CPU per chat on SQLite; PostgreSQL within 2×.
The last line printed is the result as one JSON object, also written to
`benchmarks/results/store_save.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jib
import jib.testing  # registers the offline echo! generator
from jib import Chat
from jib.storage import open_store

GOAL_US = 60.0
RESULTS = Path(__file__).parent / "results" / "store_save.json"
_FLOOR_TABLE = "bench_floor"


def make_chats(count: int) -> list[Chat]:
    """`count` echo chats, made offline the way a user's batch would make them."""
    generator = jib.get_generator("echo!bench")
    prompts = [f"prompt {i}" for i in range(count)]
    return asyncio.run(generator.chat().run_batch(prompts))


def _chunks(chats: Sequence[Chat], size: int) -> list[Sequence[Chat]]:
    return [chats[start : start + size] for start in range(0, len(chats), size)]


def _cpu_per_chat(action: Callable[[], None], count: int) -> float:
    start = time.process_time()
    action()
    return (time.process_time() - start) / count * 1e6


def time_store(url: str, chats: Sequence[Chat], chunk: int) -> float:
    """CPU µs per chat of saving `chats` in chunks into the (empty) store at `url`."""
    with open_store(url) as store:

        def save_all() -> None:
            for part in _chunks(chats, chunk):
                store.save(part)

        return _cpu_per_chat(save_all, len(chats))


def time_sqlite_floor(path: Path, chats: Sequence[Chat], chunk: int) -> float:
    """CPU µs per chat of `executemany` of `(id, to_json())` rows into a fresh SQLite file."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(f"CREATE TABLE {_FLOOR_TABLE} (id TEXT PRIMARY KEY, data TEXT NOT NULL)")

    def insert_all() -> None:
        for part in _chunks(chats, chunk):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                f"INSERT INTO {_FLOOR_TABLE} VALUES (?, ?)",
                [(chat.id, chat.to_json()) for chat in part],
            )
            connection.execute("COMMIT")

    try:
        return _cpu_per_chat(insert_all, len(chats))
    finally:
        connection.close()


def time_postgres_floor(url: str, chats: Sequence[Chat], chunk: int) -> float:
    """CPU µs per chat of psycopg `executemany` of `(id, to_json())` rows into a fresh table."""
    import psycopg
    from sqlalchemy import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    ) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {_FLOOR_TABLE}")
        connection.execute(f"CREATE TABLE {_FLOOR_TABLE} (id TEXT PRIMARY KEY, data JSONB)")
        connection.commit()

        def insert_all() -> None:
            for part in _chunks(chats, chunk):
                with connection.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO {_FLOOR_TABLE} VALUES (%s, %s::jsonb)",
                        [(chat.id, chat.to_json()) for chat in part],
                    )
                connection.commit()

        try:
            return _cpu_per_chat(insert_all, len(chats))
        finally:
            connection.execute(f"DROP TABLE {_FLOOR_TABLE}")
            connection.commit()


def _empty_postgres(url: str) -> None:
    """Drop jib's tables from the (scratch) database at `url`, so each run starts fresh."""
    from sqlalchemy import create_engine

    from jib.storage._schema import metadata

    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A database created on the server at `server_url` for this run, dropped at the end: the
    benchmark never touches a database that holds anything."""
    from sqlalchemy import create_engine, make_url, text

    server = make_url(server_url)
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")
    name = f"jib_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _repeat(measure: Callable[[], float], times: int) -> list[float]:
    return [measure() for _ in range(times)]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def _measure_sqlite(chats: Sequence[Chat], chunk: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        runs = iter(range(repeat * 2))

        def save() -> float:
            return time_store(f"sqlite:///{Path(folder) / f'jib{next(runs)}.db'}", chats, chunk)

        def floor() -> float:
            return time_sqlite_floor(Path(folder) / f"floor{next(runs)}.db", chats, chunk)

        return {"save": _summary(_repeat(save, repeat)), "floor": _summary(_repeat(floor, repeat))}


def _measure_postgres(url: str, chats: Sequence[Chat], chunk: int, repeat: int) -> dict[str, Any]:
    def save() -> float:
        _empty_postgres(url)
        return time_store(url, chats, chunk)

    return {
        "save": _summary(_repeat(save, repeat)),
        "floor": _summary(_repeat(lambda: time_postgres_floor(url, chats, chunk), repeat)),
    }


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'backend':<12}{'what':<28}{'median µs':>10}{'range µs':>18}")
    for backend, figures in results.items():
        for name, label in (("save", "store.save"), ("floor", "executemany to_json()")):
            shown = figures[name]
            span = f"{shown['min']:.1f}–{shown['max']:.1f}"
            print(f"{backend:<12}{label:<28}{shown['median']:>10.1f}{span:>18}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table, then the result as one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure PostgreSQL: a server where a scratch database may be created",
    )
    args = parser.parse_args(argv)

    chats = make_chats(args.chats)
    results = {"sqlite": _measure_sqlite(chats, args.chunk, args.repeat)}
    if args.postgres:
        with scratch_database(args.postgres) as url:
            results["postgresql"] = _measure_postgres(url, chats, args.chunk, args.repeat)
    _print_table(results)
    summary: dict[str, Any] = {
        "benchmark": "store_save",
        "chats": args.chats,
        "chunk": args.chunk,
        "repeat": args.repeat,
        "goal_us_per_chat": GOAL_US,
        "python": sys.version.split()[0],
        "us_per_chat": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
