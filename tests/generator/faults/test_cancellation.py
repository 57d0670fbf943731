"""Cancelling a batch stops it at once: no task of jib's keeps running, no connection stays open.

The server holds answers (or tells the generator to wait before retrying) far longer than the
test runs, so the batch is cancelled in the middle of its work, and "at once" is read off the
server: the cancelled batch ended before any held answer left or any retry was due.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.generator.faults.conftest import WITH_HEADERS, Remote
from tests.support.fault_injection import Always, Fault, RunningFaultInjection, eventually

HELD = 60.0
"""Seconds the server holds each answer: never reached while the test runs."""
RETRY_AFTER = 30.0
"""Seconds a 429 asks the generator to wait: never reached either, and within the default
request timeout (60 s), so the generator does wait rather than give up."""


def leftover_tasks(before: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks running now that were not running before (the test's own excluded)."""
    return [task for task in asyncio.all_tasks() - before if task is not asyncio.current_task()]


async def cancel(task: asyncio.Task[object]) -> float:
    """Cancel `task`, wait for it to end, and return when it had ended (`time.monotonic()`)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic()


async def test_cancelling_a_batch_of_slow_chats_leaves_no_task_and_no_connection(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(delay=HELD)  # nothing is answered while the test runs
    generator = remote.generator(max_connections=32)
    before = asyncio.all_tasks()
    batch = asyncio.create_task(generator.chat().run_batch([f"slow {i}" for i in range(200)]))
    assert await eventually(lambda: faults.state.in_flight == 32, timeout=120)

    ended = await cancel(batch)

    # The batch did not wait for its answers: it ended before the server would have sent one.
    assert ended < min(request.start for request in faults.state.requests()) + HELD
    assert await eventually(lambda: faults.state.open_connections == 0, timeout=30), (
        f"{faults.state.open_connections} connections still open"
    )
    assert {request.outcome for request in faults.state.requests()} == {"client closed"}
    assert await eventually(lambda: not leftover_tasks(before), timeout=30), leftover_tasks(before)
    await asyncio.sleep(0.3)
    assert faults.state.total_requests == 32  # nothing more was sent after the cancel


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_cancelling_a_batch_waiting_to_retry_ends_it_at_once(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    # Every first attempt gets a 429 asking for half a minute's wait, which the generator honours.
    faults.state.reset(Always(Fault.rate_limit(retry_after=RETRY_AFTER)))
    generator = remote.generator(max_connections=20, max_retry_wait=2 * RETRY_AFTER)
    before = asyncio.all_tasks()
    batch = asyncio.create_task(generator.chat().run_batch([f"patient {i}" for i in range(20)]))
    assert await eventually(lambda: len(faults.state.attempts()) == 20, timeout=120)
    # Each item is now waiting for its retry (the 429 may still be on its way to the client).
    await asyncio.sleep(0.1)

    ended = await cancel(batch)

    requests = faults.state.requests()
    assert len(requests) == 20  # no retry went out: none was due yet
    # It did not sit out the wait: the batch ended before the first retry was due.
    assert ended < min(request.end or request.start for request in requests) + RETRY_AFTER
    assert await eventually(lambda: not leftover_tasks(before), timeout=30), leftover_tasks(before)
    # (Connections whose answers came back stay in the generator's pool, which outlives a
    # batch: only in-flight ones must close, and here none is in flight.)
    await asyncio.sleep(0.5)
    assert faults.state.total_requests == 20  # and none went out after the cancel
    assert faults.state.in_flight == 0
