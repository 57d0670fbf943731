"""Fresh stores for `main_job.py`'s runs, and the checks that every chat was stored right.

Every run gets a store of its own: a new SQLite file in the benchmark's temporary folder, or a
new PostgreSQL database (`jib_bench_<random>`) on the server given, dropped once the run is
checked, so runs never see each other's rows and nothing accumulates on the server.

A check reads the store back after the run: jib's store through `jib.storage.open_store` (the
jib of this checkout, `src/` next to `benchmarks/`), the floor's table with sqlite3 or psycopg.
It raises `Mismatch` unless the store holds exactly one answer per prompt of the dataset, none
failed, each the answer expected (the stub's constant, or the prompt itself for `echo!`).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "Hello from the stub."
RUN = "main-job"
"""The `--run` name every jib run stores its chats under."""

StoreKind = Literal["sqlite", "postgres"]
Expected = Literal["stub", "echo"]


class Mismatch(Exception):
    """The store does not hold what the run should have stored; the message says what differs."""


@dataclass(frozen=True)
class Store:
    """One fresh store: how jib names it (`--store`) and how the floor script names it."""

    kind: StoreKind
    jib_url: str
    floor_url: str


@dataclass(frozen=True)
class Stores:
    """Where fresh stores are made: a folder for SQLite files, a PostgreSQL server (or none)."""

    folder: Path
    postgres: str | None = None

    @contextmanager
    def fresh(self, kind: StoreKind) -> Iterator[Store]:
        """A new, empty store of `kind`, removed afterwards."""
        name = f"jib_bench_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            path = self.folder / f"{name}.db"
            try:
                yield Store(kind, str(path), str(path))
            finally:
                for leftover in self.folder.glob(f"{name}.db*"):
                    leftover.unlink()
            return
        if self.postgres is None:
            raise ValueError("no PostgreSQL server was given")
        with postgres_database(self.postgres, name) as (jib_url, libpq_url):
            yield Store(kind, jib_url, libpq_url)


def libpq_url(url: str, database: str | None = None) -> str:
    """A SQLAlchemy-style PostgreSQL URL (`postgresql+psycopg://…`) as psycopg takes it."""
    from sqlalchemy import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def jib_postgres_url(url: str, database: str) -> str:
    """The same server's `database`, as jib's `--store` takes it."""
    from sqlalchemy import make_url

    parsed = make_url(url).set(drivername="postgresql+psycopg", database=database)
    return parsed.render_as_string(hide_password=False)


@contextmanager
def postgres_database(server: str, name: str) -> Iterator[tuple[str, str]]:
    """Create database `name` on `server`; yield its jib and libpq URLs; drop it afterwards."""
    import psycopg

    with psycopg.connect(libpq_url(server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield jib_postgres_url(server, name), libpq_url(server, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_problem(server: str) -> str | None:
    """Why PostgreSQL at `server` cannot be used for the benchmark, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return 'psycopg is not installed (pip install -e ".[postgres]")'
    try:
        with psycopg.connect(libpq_url(server), connect_timeout=10) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:  # any reason at all means: no PostgreSQL for this run
        return f"cannot connect: {str(exc).strip().splitlines()[0]}"
    return None


# --- checks ------------------------------------------------------------------------------------


def compare(prompts: list[str], answered: Iterable[tuple[str, str]], expected: Expected) -> int:
    """How many answers were stored; `Mismatch` unless one (prompt, answer) per prompt, right."""
    seen: Counter[str] = Counter()
    wrong = 0
    for prompt, answer in answered:
        seen[prompt] += 1
        wrong += answer != (ANSWER if expected == "stub" else prompt)
    missing = len(set(prompts) - set(seen))
    twice = sum(count - 1 for count in seen.values())
    if wrong or missing or twice or len(set(seen) - set(prompts)):
        raise Mismatch(
            f"{sum(seen.values())} answers stored for {len(prompts)} prompts: {wrong} wrong, "
            f"{missing} prompts missing, {twice} stored twice"
        )
    return sum(seen.values())


def check_jib(store: Store, prompts: list[str], expected: Expected) -> int:
    """How many chats jib stored; `Mismatch` unless one right chat per prompt, none failed."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from jib.chat import Chat
    from jib.storage import open_store

    with open_store(store.jib_url) as chat_store:
        failed = chat_store.count(run=RUN, failed=True)
        if failed:
            raise Mismatch(f"{failed} of the stored chats failed")
        records = chat_store.iter_records(run=RUN, rebuild_generator=False)
        chats = (record for record in records if isinstance(record, Chat))
        answered = ((chat.messages[-1].content, chat.content) for chat in chats)
        return compare(prompts, answered, expected)


def floor_rows(store: Store) -> Iterator[Any]:
    """The floor's stored rows, each the JSON object it wrote."""
    if store.kind == "sqlite":
        connection = sqlite3.connect(store.floor_url)
        try:
            for (body,) in connection.execute("SELECT body FROM answers"):
                yield json.loads(body)
        finally:
            connection.close()
        return
    import psycopg

    with psycopg.connect(store.floor_url) as server:
        yield from (body for (body,) in server.execute("SELECT body FROM answers"))


def check_floor(store: Store, prompts: list[str]) -> int:
    """How many rows the floor stored; `Mismatch` unless the stub's answer once per prompt."""
    answered = (
        (row["prompt"], row["response"]["choices"][0]["message"]["content"])
        for row in floor_rows(store)
    )
    return compare(prompts, answered, "stub")
