"""`jib._deadlines`: request deadlines on one timer per loop, behaving as `asyncio.timeout`."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

if sys.version_info < (3, 11):  # pragma: no cover
    pytest.skip("Python 3.10 uses its own timeout", allow_module_level=True)

from jib import _deadlines
from jib._deadlines import deadline_after, enter_deadline


async def sleeper(delay: float, sleep: float) -> str:
    async with deadline_after(delay):
        await asyncio.sleep(sleep)
    return "done"


async def test_a_block_left_in_time_ends_normally() -> None:
    assert await sleeper(10.0, 0.01) == "done"


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        await sleeper(0.02, 30.0)


async def test_a_deadline_of_zero_expires_at_the_first_wait() -> None:
    with pytest.raises(TimeoutError):
        await sleeper(0.0, 30.0)


async def test_many_deadlines_out_of_order_each_expire_alone() -> None:
    """Late deadlines first, then earlier ones (the timer moves), and some blocks in time."""
    delays = [0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02]
    expiring = [asyncio.create_task(sleeper(d, 30.0)) for d in delays]
    in_time = [asyncio.create_task(sleeper(30.0, 0.01)) for _ in range(20)]

    results = await asyncio.gather(*expiring, *in_time, return_exceptions=True)

    assert all(isinstance(r, TimeoutError) for r in results[: len(delays)])
    assert results[len(delays) :] == ["done"] * 20


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    task = asyncio.create_task(sleeper(30.0, 30.0))
    await asyncio.sleep(0.01)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_inside_a_wider_deadline_is_its_own() -> None:
    async def nested() -> str:
        async with deadline_after(30.0):
            try:
                async with deadline_after(0.02):
                    await asyncio.sleep(30.0)
            except TimeoutError:
                return "inner timed out"
        return "not reached"

    assert await nested() == "inner timed out"


async def test_finished_deadlines_do_not_pile_up() -> None:
    for _ in range(5_000):
        async with deadline_after(60.0):
            pass
    loop = asyncio.get_running_loop()

    assert len(_deadlines._per_loop[loop]._heap) <= 2 * _deadlines._MOST_DONE + 2


def test_each_loop_has_its_own_deadlines() -> None:
    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(sleeper(0.01, 30.0))
        assert asyncio.run(sleeper(30.0, 0.0)) == "done"


async def entered(delay: float, sleep: float) -> str:
    block = enter_deadline(time.monotonic() + delay)
    try:
        await asyncio.sleep(sleep)
    except BaseException as exc:
        block.leave(exc)
        raise
    block.leave(None)
    return "done"


async def test_an_entered_deadline_left_in_time_ends_normally() -> None:
    assert await entered(10.0, 0.01) == "done"


async def test_an_entered_deadline_that_passes_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        await entered(0.02, 30.0)


async def test_an_entered_deadline_leaves_an_outside_cancellation_alone() -> None:
    task = asyncio.create_task(entered(30.0, 30.0))
    await asyncio.sleep(0.01)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_entered_and_async_with_deadlines_share_one_timer() -> None:
    results = await asyncio.gather(
        entered(0.02, 30.0), sleeper(0.03, 30.0), entered(30.0, 0.01), return_exceptions=True
    )
    assert isinstance(results[0], TimeoutError) and isinstance(results[1], TimeoutError)
    assert results[2] == "done"


def test_entering_a_deadline_outside_a_task_is_refused() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []

        def outside() -> None:
            try:
                enter_deadline(time.monotonic() + 1.0)
            except RuntimeError as exc:
                failures.append(exc)

        loop.call_soon(outside)
        await asyncio.sleep(0.01)
        assert failures and "inside a task" in str(failures[0])

    asyncio.run(main())
