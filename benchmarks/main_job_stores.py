"""Fresh stores for `main_job.py`'s runs, and the checks that every chat was stored right.

Every run gets a store of its own: a new SQLite file in the benchmark's temporary folder, or a
new PostgreSQL database (`jib_bench_<random>`) on the server given, dropped once the run is
checked, so runs never see each other's rows and nothing accumulates on the server. After the
run, `check` reads the store back (`main_job_checks.py` says how).

Whatever touches a database (creating one, reading a store back through jib) runs in a helper
process, `main_job_checks.py`, never in the driver: Linux carries a parent's peak RSS into the
`ru_maxrss` of every child it starts afterwards (the child inherits the high-water mark across
fork and exec), so a driver that had loaded jib, SQLAlchemy or 20,000 records would raise the
peak RSS measured for every later run. The driver stays at the size of a bare interpreter, well
under any run's own peak.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import transport  # a sibling script: on the path when main_job.py runs

HELPER = Path(__file__).resolve().parent / "main_job_checks.py"

StoreKind = Literal["sqlite", "postgres"]
Expected = Literal["floor", "stub", "echo"]


class Mismatch(Exception):
    """A run failed, or its store does not hold what it should; the message says what."""


@dataclass(frozen=True)
class Store:
    """One fresh store: how jib names it (`--store`) and how the floor script names it."""

    kind: StoreKind
    jib_url: str
    floor_url: str


def postgres_url(server: str, scheme: str, database: str | None = None) -> str:
    """`server` (`postgresql://…` or `postgresql+psycopg://…`) with `scheme` and `database`."""
    parts = urlsplit(server)
    path = parts.path if database is None else f"/{database}"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def helper(*args: str) -> str:
    """Run `main_job_checks.py ARGS` with this checkout's jib; its output, or `Mismatch`."""
    done = subprocess.run(
        [sys.executable, str(HELPER), *args],
        env=transport.worker_env(peer=False),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise Mismatch(tail[0][-400:])
    return done.stdout.strip()


def postgres_problem(server: str) -> str | None:
    """Why PostgreSQL at `server` cannot be used for the benchmark, or None when it can."""
    try:
        return helper("probe", postgres_url(server, "postgresql")) or None
    except Mismatch as exc:
        return str(exc)


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
        server = postgres_url(self.postgres, "postgresql")
        helper("create", server, name)
        try:
            jib_url = postgres_url(self.postgres, "postgresql+psycopg", name)
            yield Store(kind, jib_url, postgres_url(self.postgres, "postgresql", name))
        finally:
            helper("drop", server, name)

    @staticmethod
    def check(expected: Expected, store: Store, dataset: Path) -> int:
        """How many answers `store` holds; `Mismatch` unless one right answer per prompt."""
        url = store.floor_url if expected == "floor" else store.jib_url
        return int(helper("check", expected, store.kind, url, str(dataset)))
