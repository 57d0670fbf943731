"""A SQLite response cache keeps the keys its table holds in memory once that pays
(`jib.storage._response_keys_known`): what another process writes or deletes meanwhile is
still seen. Two cache objects on one file stand for two processes; a real OpenAI-protocol
server on 127.0.0.1 numbers its answers (`tests.support.counting_server`)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jib
from jib.storage import ResponseCache, open_response_cache
from jib.storage._response_keys_known import MOST_KEYS, KnownKeys
from tests.support.counting_server import chat_posts, counting_server, identifier
from tests.support.scripted_server import ScriptedServer

REFRESHED = 1.2
"""Seconds after which what another process wrote has been read in (once a second)."""


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with counting_server() as running:
        yield running


@pytest.fixture
def caches(tmp_path: Path) -> Iterator[tuple[ResponseCache, ResponseCache]]:
    """This process's cache and another's, on one SQLite file."""
    url = str(tmp_path / "cache.db")
    with open_response_cache(url) as mine, open_response_cache(url) as theirs:
        yield mine, theirs


def chat_many(cache: ResponseCache, server: ScriptedServer, prompts: list[str]) -> list[jib.Chat]:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    return asyncio.run(generator.chat().run_batch(prompts))


def origin(chat: jib.Chat) -> Any:
    """The id of the chat a cached answer was first made for (`None`: not from the cache)."""
    return (chat.extra.get("response_cache") or {}).get("chat_id")


def test_an_answer_another_process_wrote_is_served_once_read_in(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache]
) -> None:
    mine, theirs = caches
    chat_many(mine, server, [f"mine {n}" for n in range(8)])  # the keys held are read in
    (written,) = chat_many(theirs, server, ["theirs"])
    time.sleep(REFRESHED)
    (served,) = chat_many(mine, server, ["theirs"])

    assert origin(served) == written.id
    assert len(chat_posts(server)) == 9


def read_in_then_cleared(
    server: ScriptedServer, mine: ResponseCache, theirs: ResponseCache
) -> None:
    """`mine` holds the table read in up to its last row; then `theirs` deletes every row."""
    chat_many(mine, server, [f"mine {n}" for n in range(8)])
    time.sleep(REFRESHED)
    chat_many(mine, server, ["mine 8"])
    assert theirs.clear() == 9


def test_what_another_process_writes_after_clearing_the_cache_is_seen(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache]
) -> None:
    mine, theirs = caches
    read_in_then_cleared(server, mine, theirs)
    (written,) = chat_many(theirs, server, ["theirs"])  # its row takes a rowid used before
    time.sleep(REFRESHED)
    (served,) = chat_many(mine, server, ["theirs"])

    assert origin(served) == written.id


def test_what_another_process_writes_past_the_rows_read_after_clearing_them_is_seen(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache]
) -> None:
    mine, theirs = caches
    read_in_then_cleared(server, mine, theirs)
    written = chat_many(theirs, server, [f"theirs {n}" for n in range(12)])  # past the last
    time.sleep(REFRESHED)
    served = chat_many(mine, server, ["theirs 0", "theirs 11"])

    assert [origin(chat) for chat in served] == [written[0].id, written[11].id]
    assert len(chat_posts(server)) == 21


def test_a_run_another_process_cleared_and_ran_again_is_seen(
    server: ScriptedServer, tmp_path: Path
) -> None:
    url = str(tmp_path / "cache.db")
    with (
        open_response_cache(url, run="mine") as mine,
        open_response_cache(url, run="monday") as theirs,
    ):
        chat_many(mine, server, [f"mine {n}" for n in range(8)])
        chat_many(theirs, server, [f"monday {n}" for n in range(4)])  # the table's last rows
        time.sleep(REFRESHED)
        chat_many(mine, server, ["mine 0"])  # read in up to them
        assert theirs.clear(run="monday") == 4  # `jib cache clear --run monday`
        written = chat_many(theirs, server, [f"again {n}" for n in range(6)])
        time.sleep(REFRESHED)
        served = chat_many(mine, server, [f"again {n}" for n in range(6)])

    assert [origin(chat) for chat in served] == [chat.id for chat in written]


def test_clearing_here_reads_the_table_in_again(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache]
) -> None:
    mine, theirs = caches
    chat_many(mine, server, [f"mine {n}" for n in range(8)])
    assert mine.clear() == 8
    (written,) = chat_many(theirs, server, ["theirs"])
    (served,) = chat_many(mine, server, ["theirs"])  # at once: nothing held is trusted

    assert origin(served) == written.id


def test_an_answer_kept_here_is_served_at_once_written_or_not(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache]
) -> None:
    mine, _ = caches
    first = chat_many(mine, server, [f"mine {n}" for n in range(8)])
    again = chat_many(mine, server, [f"mine {n}" for n in range(8)])

    assert [origin(chat) for chat in again] == [chat.id for chat in first]
    assert len(chat_posts(server)) == 8


def test_a_table_far_bigger_than_the_lookups_made_is_asked_every_time(
    server: ScriptedServer, caches: tuple[ResponseCache, ResponseCache], tmp_path: Path
) -> None:
    mine, theirs = caches
    fill(tmp_path / "cache.db", 10_000)
    chat_many(mine, server, [f"mine {n}" for n in range(8)])
    (written,) = chat_many(theirs, server, ["theirs"])
    (served,) = chat_many(mine, server, ["theirs"])  # at once: nothing is held yet

    assert origin(served) == written.id


@pytest.mark.parametrize(("rows", "held"), [(MOST_KEYS, True), (MOST_KEYS + 1, False)])
def test_keys_are_held_only_up_to_a_bound(tmp_path: Path, rows: int, held: bool) -> None:
    path = tmp_path / "cache.db"
    open_response_cache(str(path)).close()
    fill(path, rows)
    with sqlite3.connect(path) as connection:
        keys = read_in(KnownKeys(), connection, rows)

    assert (keys is not None) == held
    if keys is not None:
        assert len(keys) == rows + 1 and "kept" in keys


def test_a_big_table_is_read_in_a_slice_a_lookup_never_at_once(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    open_response_cache(str(path)).close()
    fill(path, MOST_KEYS)
    known = KnownKeys()
    with sqlite3.connect(path) as connection:
        first = known.get(connection, asking=MOST_KEYS, kept=lambda: ["kept"])
        keys = read_in(known, connection, MOST_KEYS)

    assert first is None  # the event loop is not held while 250,000 keys are read
    assert keys is not None and len(keys) == MOST_KEYS + 1


def read_in(known: KnownKeys, connection: sqlite3.Connection, rows: int) -> set[str] | None:
    """`known`'s keys once read in (`None`: it will not hold them), asking as a run would."""
    for _ in range(rows // 1000 + 2):
        keys = known.get(connection, asking=rows, kept=lambda: ["kept"])
        if keys is not None:
            return keys
    return None


def fill(path: Path, rows: int) -> None:
    """`rows` answers of another generator, written straight into the table."""
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO jib_response_cache (key, sample, generator, kind, answer, created_at, "
            "size) VALUES (?, 0, 'other!model', 'chat', '{}', 0, 2)",
            ((f"{n:032x}",) for n in range(rows)),
        )
