"""Cancelling a batch stops it at once: no task of jib's keeps running, no connection stays open.

The server holds answers (or the generator waits before retrying) so the batch is cancelled in
the middle of its work; the server reports the connections still open.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.generator.faults.conftest import Remote
from tests.support.fault_injection import Always, Fault, RunningFaultInjection, eventually


def leftover_tasks(before: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks running now that were not running before (the test's own excluded)."""
    return [task for task in asyncio.all_tasks() - before if task is not asyncio.current_task()]


async def cancel(task: asyncio.Task[object]) -> float:
    """Cancel `task`, wait for it to end, and return how long that took."""
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


async def test_cancelling_a_batch_of_slow_chats_leaves_no_task_and_no_connection(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(delay=60)  # nothing is answered while the test runs
    generator = remote.generator(max_connections=32)
    before = asyncio.all_tasks()
    batch = asyncio.create_task(generator.chat().run_batch([f"slow {i}" for i in range(200)]))
    assert await eventually(lambda: faults.state.in_flight == 32, timeout=20)

    assert await cancel(batch) < 2

    assert await eventually(lambda: faults.state.open_connections == 0, timeout=3), (
        f"{faults.state.open_connections} connections still open"
    )
    assert await eventually(lambda: not leftover_tasks(before), timeout=1), leftover_tasks(before)
    await asyncio.sleep(0.3)
    assert faults.state.total_requests == 32  # nothing more was sent after the cancel


async def test_cancelling_a_batch_waiting_to_retry_ends_it_at_once(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Always(Fault.error(503)))
    generator = remote.generator(max_connections=20, retry_backoff=5, max_retry_wait=30)
    before = asyncio.all_tasks()
    batch = asyncio.create_task(generator.chat().run_batch([f"patient {i}" for i in range(20)]))
    # Every item has failed once and is now waiting (up to 5 s, full jitter) to retry.
    assert await eventually(lambda: len(faults.state.attempts()) == 20, timeout=20)
    await asyncio.sleep(0.1)
    sent = faults.state.total_requests

    assert await cancel(batch) < 1

    assert await eventually(lambda: not leftover_tasks(before), timeout=1), leftover_tasks(before)
    # (Connections whose answers came back stay in the generator's pool, which outlives a
    # batch: only in-flight ones must close, and here none is in flight.)
    await asyncio.sleep(0.5)
    assert faults.state.total_requests == sent  # no retry went out after the cancel
    assert faults.state.in_flight == 0
