"""The floor of `jib run`: the same job written the simplest way, to measure jib against.

    python benchmarks/main_job_floor.py PROMPTS API_BASE STORE

Sends one chat per line of PROMPTS (a text file, one prompt per line) to API_BASE's
`/chat/completions` with aiohttp, 32 in flight, and stores each answer as one JSON row (the
prompt and the whole response) in STORE, in batches of 500 with `executemany`: a SQLite file
(WAL, `synchronous=NORMAL`, as jib sets it) or a PostgreSQL URL (psycopg, a `jsonb` column).
No retries, no progress, no records: the least code that does the same work.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

IN_FLIGHT = 32
BATCH = 500
MODEL = "stub"

Writer = Callable[[list[str]], None]
"""Insert JSON rows, one transaction a call."""


def open_sqlite(path: str) -> tuple[Writer, Callable[[], None]]:
    """A writer into the SQLite file at `path`, and its close."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS answers (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")

    def write(rows: list[str]) -> None:
        with db:
            db.executemany("INSERT INTO answers (body) VALUES (?)", [(row,) for row in rows])

    return write, db.close


def open_postgres(url: str) -> tuple[Writer, Callable[[], None]]:
    """A writer into the PostgreSQL database at `url`, and its close."""
    import psycopg

    db = psycopg.connect(url)
    db.execute("CREATE TABLE IF NOT EXISTS answers (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
    db.commit()

    def write(rows: list[str]) -> None:
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO answers (body) VALUES (%s)", [(row,) for row in rows])
        db.commit()

    return write, db.close


async def run(prompts: list[str], api_base: str, write: Writer) -> None:
    """Every prompt to the server, IN_FLIGHT at a time; answers written BATCH at a time."""
    todo = iter(prompts)
    pending: list[str] = []
    url = f"{api_base}/chat/completions"
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for prompt in todo:
                body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
                async with session.post(url, json=body) as response:
                    response.raise_for_status()
                    answer = await response.json()
                pending.append(json.dumps({"prompt": prompt, "response": answer}))
                if len(pending) >= BATCH:
                    write(pending)
                    pending.clear()

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    if pending:
        write(pending)


def main(argv: list[str]) -> None:
    prompts_path, api_base, store = argv
    prompts = Path(prompts_path).read_text().splitlines()
    is_postgres = store.startswith(("postgresql://", "postgres://"))
    write, close = open_postgres(store) if is_postgres else open_sqlite(store)
    asyncio.run(run(prompts, api_base, write))
    close()


if __name__ == "__main__":
    main(sys.argv[1:])
