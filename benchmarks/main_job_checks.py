"""What `main_job.py` does to a database, in a process of its own (see `main_job_stores.py`).

    python benchmarks/main_job_checks.py probe SERVER
    python benchmarks/main_job_checks.py create SERVER NAME
    python benchmarks/main_job_checks.py drop SERVER NAME
    python benchmarks/main_job_checks.py check floor|stub|echo sqlite|postgres URL DATASET

SERVER and URL are PostgreSQL URLs as psycopg takes them (`postgresql://…`), except a jib
store's URL, which is what `jib run --store` took. `probe` prints why the server cannot be used
(or nothing); `create` and `drop` make and remove an empty database; `check` reads a store back
and prints how many answers it holds, or exits 1 saying what is wrong: unless it holds exactly
one answer per prompt of DATASET (a text file, one prompt a line), none failed, each the answer
expected: `floor` for the floor script's table, `stub` and `echo` for jib's store after
`openai!` (the stub's constant) and `echo!` (the prompt itself). jib's store is read through
`jib.storage.open_store`, the jib first on `PYTHONPATH`.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ANSWER = "Hello from the stub."
RUN = "main-job"
"""The `--run` name every jib run stores its chats under."""


class Mismatch(Exception):
    """The store does not hold what the run should have stored; the message says what differs."""


def probe(server: str) -> str:
    """Why PostgreSQL at `server` cannot be used, or "" when it can."""
    try:
        import psycopg
    except ImportError:
        return 'psycopg is not installed (pip install -e ".[postgres]")'
    try:
        with psycopg.connect(server, connect_timeout=10) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:  # any reason at all means: no PostgreSQL for this run
        return f"cannot connect: {str(exc).strip().splitlines()[0]}"
    return ""


def create_or_drop(server: str, name: str, create: bool) -> None:
    """Create an empty database `name` on `server`, or drop it and whatever uses it."""
    import psycopg

    statement = f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}"'
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(statement if create else statement + " WITH (FORCE)")


def compare(prompts: list[str], answered: Iterable[tuple[str, str]], expected: str) -> int:
    """How many answers were stored; `Mismatch` unless one (prompt, answer) per prompt, right."""
    seen: Counter[str] = Counter()
    wrong = 0
    for prompt, answer in answered:
        seen[prompt] += 1
        wrong += answer != (prompt if expected == "echo" else ANSWER)
    missing = len(set(prompts) - set(seen))
    twice = sum(count - 1 for count in seen.values())
    if wrong or missing or twice or len(set(seen) - set(prompts)):
        raise Mismatch(
            f"{sum(seen.values())} answers stored for {len(prompts)} prompts: {wrong} wrong, "
            f"{missing} prompts missing, {twice} stored twice"
        )
    return sum(seen.values())


def jib_answers(url: str) -> Iterator[tuple[str, str]]:
    """(prompt, answer) of every chat in jib's store at `url`; `Mismatch` if any failed."""
    from jib.chat import Chat
    from jib.storage import open_store

    with open_store(url) as store:
        failed = store.count(run=RUN, failed=True)
        if failed:
            raise Mismatch(f"{failed} of the stored chats failed")
        for record in store.iter_records(run=RUN, rebuild_generator=False):
            if isinstance(record, Chat):
                yield record.messages[-1].content, record.content


def floor_rows(kind: str, url: str) -> Iterator[Any]:
    """The floor's stored rows, each the JSON object it wrote."""
    if kind == "sqlite":
        connection = sqlite3.connect(url)
        try:
            for (body,) in connection.execute("SELECT body FROM answers"):
                yield json.loads(body)
        finally:
            connection.close()
        return
    import psycopg

    with psycopg.connect(url) as server:
        yield from (body for (body,) in server.execute("SELECT body FROM answers"))


def check(what: str, kind: str, url: str, dataset: Path) -> int:
    """How many answers the store holds; `Mismatch` unless one right answer per prompt."""
    prompts = dataset.read_text().splitlines()
    if what != "floor":
        return compare(prompts, jib_answers(url), what)
    answered = (
        (row["prompt"], row["response"]["choices"][0]["message"]["content"])
        for row in floor_rows(kind, url)
    )
    return compare(prompts, answered, what)


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "probe":
        print(probe(args[0]))
    elif command in ("create", "drop"):
        create_or_drop(args[0], args[1], create=command == "create")
    elif command == "check":
        try:
            print(check(args[0], args[1], args[2], Path(args[3])))
        except Mismatch as exc:
            print(exc, file=sys.stderr)
            return 1
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
