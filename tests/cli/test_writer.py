"""`BatchWriter`: a run's chats stored in the background, many to a transaction, nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from jib.chat import Chat
from jib.cli._writer import BatchWriter
from jib.messages import Message
from jib.storage import StoreError, open_store


def chats(count: int, start: int = 0) -> list[Chat]:
    return [
        Chat(messages=[Message("user", f"prompt {i}")], generated=[Message("assistant", "ok")])
        for i in range(start, start + count)
    ]


def stored_prompts(path: Path, run: str = "r") -> list[str]:
    with open_store(path) as store:
        return sorted(d["messages"][0]["content"] for d in store.iter_dicts(run=run))


async def test_every_chunk_put_is_stored_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "jib.db"
    with open_store(path) as store:
        writer = BatchWriter(store, run="r", tags=["t"], batch=50)
        for start in range(0, 230, 10):
            await writer.put(chats(10, start))
        await writer.close()

        assert store.count(run="r", tag="t") == 230
    assert stored_prompts(path) == sorted(f"prompt {i}" for i in range(230))


async def test_a_chunk_is_stored_after_lingering_without_waiting_for_a_full_batch(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "jib.db") as store:
        writer = BatchWriter(store, run="r", batch=500, linger=0.05)
        await writer.put(chats(3))
        for _ in range(400):  # up to 20 s on a loaded machine; usually one linger
            if store.count(run="r") == 3:
                break
            await asyncio.sleep(0.05)
        assert store.count(run="r") == 3
        await writer.close()


async def test_a_replacing_chunk_deletes_the_records_it_replaces(tmp_path: Path) -> None:
    with open_store(tmp_path / "jib.db") as store:
        [old] = chats(1)
        store.save(old, run="r")
        writer = BatchWriter(store, run="r")
        await writer.put(chats(1, 1), replacing=[old.id])
        await writer.close()

        assert [c.messages[0].content for c in store.query(run="r")] == ["prompt 1"]


async def test_puts_wait_while_a_batch_waits_for_a_busy_store(tmp_path: Path) -> None:
    path = tmp_path / "jib.db"
    with open_store(path) as store:
        writer = BatchWriter(store, run="r", batch=20, linger=0.0)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
        try:
            await writer.put(chats(20))  # taken by the writer, which now waits for the file
            await asyncio.sleep(0.1)
            await writer.put(chats(20, 20))  # waits in memory: one batch
            third = asyncio.create_task(writer.put(chats(20, 40)))
            await asyncio.sleep(0.3)
            assert not third.done(), "a third batch was taken while the store was busy"
        finally:
            blocker.rollback()
            blocker.close()
        await third
        await writer.close()

        assert store.count(run="r") == 60


async def test_a_failed_write_is_raised_by_the_next_put_and_by_close(tmp_path: Path) -> None:
    path = tmp_path / "jib.db"
    with open_store(path) as store:
        writer = BatchWriter(store, run="r", batch=5, linger=0.0)
        blocker = sqlite3.connect(path)
        # Every insert now fails, as on a full disk: reads still work.
        blocker.execute(
            "CREATE TRIGGER jib_test_full BEFORE INSERT ON jib_records "
            "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        )
        blocker.commit()
        blocker.close()

        async def put_until_refused() -> None:
            for start in range(0, 5000, 5):
                await writer.put(chats(5, start))
                await asyncio.sleep(0.01)

        with pytest.raises(StoreError, match="disk full"):
            await put_until_refused()
        with pytest.raises(StoreError, match="disk full"):
            await writer.close()
        assert store.count(run="r") == 0


async def test_closing_an_unused_writer_stores_nothing_and_abandon_is_safe(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "jib.db") as store:
        writer = BatchWriter(store, run="r")
        await writer.close()
        writer.abandon()

        assert store.count() == 0


async def test_workers_that_never_wait_fill_batches_without_lingering(tmp_path: Path) -> None:
    """Four workers putting chunks as fast as they can (as `echo!` makes them): each full batch
    is written as it fills. A worker clearing the writer's wake-up before waiting once left
    both sides asleep until the linger ran out; with an hour's linger that would hang."""
    with open_store(tmp_path / "jib.db") as store:
        writer = BatchWriter(store, run="r", batch=40, linger=3600.0)

        async def worker(first: int) -> None:
            for start in range(first, 4000, 32):
                await asyncio.sleep(0)  # the chunk's generation, answered at once
                await writer.put(chats(8, start))

        await asyncio.wait_for(asyncio.gather(*(worker(i * 8) for i in range(4))), 120)
        await writer.close()

        assert store.count(run="r") == 4000
