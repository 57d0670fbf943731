"""Storing a run's finished chats in the background, in batches, while its requests go on.

`jib run`'s workers hand each finished chunk to a `BatchWriter` and take their next chunk at
once; one writer task stores what has gathered in one transaction (`ChatStore.asave`): as soon
as `batch` chats wait, or when the oldest has waited `linger` seconds. A slow store holds the
workers back (at most `batch` chats wait, besides those being written), so memory stays flat.

A chat counts as stored once its transaction commits: a run killed before that loses only
chats that were never acknowledged, and `--resume` runs them again. A failed write stops the
writer; the workers' next `put` and `close` raise its `StoreError`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from jib.chat import Chat
from jib.storage import ChatStore
from jib.storage.store import ON_LOOP_MOST

__all__ = ["BatchWriter"]

BATCH = 500
"""Most chats written in one transaction (PostgreSQL: each one is a round trip to the server)."""
LINGER_SECONDS = 0.25
"""Longest a finished chat waits for others to share its transaction."""


@dataclass(frozen=True, slots=True)
class _Chunk:
    records: list[Chat]
    replacing: list[str]
    put_at: float


class BatchWriter:
    """Stores chats handed to it with `put`, a batch per transaction, in a task of its own."""

    def __init__(
        self,
        store: ChatStore,
        *,
        run: str,
        tags: Sequence[str] = (),
        batch: int | None = None,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._store = store
        self._run = run
        self._tags = list(tags)
        if batch is None:  # SQLite: small enough to be written on the loop (`ChatStore.asave`)
            batch = ON_LOOP_MOST if store.backend == "sqlite" else BATCH
        self._batch = max(1, batch)
        self._linger = linger
        self._pending: deque[_Chunk] = deque()
        self._pending_records = 0
        self._closing = False
        self._error: BaseException | None = None
        # Two events, each cleared only by whoever waits on it: with one, a worker clearing it
        # before it waits could swallow the put that should wake the writer.
        self._arrived = asyncio.Event()  # something was put, or the writer is closing
        self._room = asyncio.Event()  # the writer took a batch, or failed
        self._task: asyncio.Task[None] | None = None

    async def put(self, records: list[Chat], *, replacing: Sequence[str] = ()) -> None:
        """Queue `records` for storing (with the ids of stored records they replace); wait while
        too many are waiting already.

        Raises:
            StoreError: an earlier write failed (nothing more is stored).
        """
        self._raise_if_failed()
        while self._pending_records >= self._batch and self._error is None:
            self._room.clear()
            await self._room.wait()
        self._raise_if_failed()
        if self._task is None:
            self._task = asyncio.create_task(self._write_batches())
        self._pending.append(_Chunk(records, list(replacing), time.monotonic()))
        self._pending_records += len(records)
        self._arrived.set()

    async def close(self) -> None:
        """Store everything still waiting, then stop.

        Raises:
            StoreError: a write failed.
        """
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._raise_if_failed()

    def abandon(self) -> None:
        """Stop at once, leaving what waits unstored (the run is interrupted: `--resume` runs
        it again)."""
        if self._task is not None:
            self._task.cancel()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _write_batches(self) -> None:
        try:
            while True:
                await self._wait_for_batch()
                if not self._pending:
                    return
                await self._write(self._take())
        except Exception as exc:
            self._error = exc
            self._room.set()

    async def _wait_for_batch(self) -> None:
        """Until a batch is full, the oldest waiting chat has lingered long enough, or the
        writer is closing."""
        while not self._closing and self._pending_records < self._batch:
            self._arrived.clear()
            if not self._pending:
                await self._arrived.wait()
                continue
            left = self._pending[0].put_at + self._linger - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Chunk]:
        """The waiting chunks, up to a batch of chats (at least one chunk)."""
        taken: list[_Chunk] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0].records) <= self._batch):
            chunk = self._pending.popleft()
            taken.append(chunk)
            count += len(chunk.records)
        self._pending_records -= count
        self._room.set()
        return taken

    async def _write(self, chunks: list[_Chunk]) -> None:
        records = [record for chunk in chunks for record in chunk.records]
        replacing = [record_id for chunk in chunks for record_id in chunk.replacing]
        await self._store.asave(records, run=self._run, tags=self._tags, replacing=replacing)
