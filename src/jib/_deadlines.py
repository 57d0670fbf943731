"""Request deadlines on one timer per event loop: what `asyncio.timeout` does, cheaper in bulk.

`asyncio.timeout` puts a timer on the loop's schedule each time it is entered and cancels it on
exit; at thousands of requests a second that is a few percent of a request's client CPU. Here
each loop has one `_Deadlines`: the pending deadlines in a heap of its own and a single loop
timer, armed for the earliest. A request that ends in time only marks its entry done; done
entries are dropped when they reach the top of the heap, or all at once when they are most of
it. Requests of one generator share a timeout, so deadlines mostly arrive in order and the
timer is rarely moved.

When a deadline passes, its task is cancelled, and leaving the block turns that cancellation
into `TimeoutError`, exactly as `asyncio.timeout` does (the task's cancel count tells a
cancellation of ours from anyone else's). Python 3.11 or later (`Task.uncancel`).

Deadlines are `time.monotonic()` times (the request tier's clock), turned into loop time only
when the timer is armed. `deadline_after` makes an `async with` block; the request tier enters
one with `enter_deadline` and leaves it with `Deadline.leave`, a call each and no coroutine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import time
import weakref
from collections.abc import Callable
from types import TracebackType

__all__ = ["Deadline", "deadline_after", "enter_deadline"]

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 keeps its own timeout
    raise ImportError("jib._deadlines needs Python 3.11 or later (Task.uncancel)")

_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[object] | None]
if sys.version_info < (3, 12):
    # 3.11's `asyncio.current_task` is Python code around this C dict's `get`.
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _current_task = _current_tasks.get
else:  # pragma: no cover - Python 3.12+: `current_task` is C
    _current_task = asyncio.current_task

_MOST_DONE = 64
"""Done entries tolerated in a heap before they are swept out at once (when they are also
more than half of it)."""


class Deadline:
    """A block that the running task must leave by a `time.monotonic()` time."""

    __slots__ = ("_cancelling", "_done", "_expired", "_owner", "_task", "_when")

    def __init__(
        self,
        owner: _Deadlines,
        when: float,
        task: asyncio.Task[object] | None = None,
        cancelling: int = 0,
    ) -> None:
        self._owner = owner
        self._when = when
        self._task = task
        self._cancelling = cancelling
        self._expired = False
        self._done = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._owner.add(self, asyncio.get_running_loop())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.leave(exc)

    def leave(self, exc: BaseException | None) -> None:
        """End the block, which `exc` (or nothing) left.

        Raises:
            TimeoutError: from `exc`, when the deadline cut the block short.
        """
        self._done = True
        if not self._expired:  # an expired entry has left the heap already
            self._task = None  # a done entry holds nothing (its loop included)
            owner = self._owner
            owner._done += 1
            if owner._done > _MOST_DONE and owner._done * 2 > len(owner._heap):
                owner.sweep()
            return
        task, self._task = self._task, None
        if (
            isinstance(exc, asyncio.CancelledError)
            and task is not None
            and task.uncancel() <= self._cancelling
        ):
            raise TimeoutError from exc

    def expire(self) -> None:
        """Cancel the task (the deadline has passed)."""
        self._expired = True
        if self._task is not None:
            self._task.cancel()


class _Deadlines:
    """The pending deadlines of one loop, and its timer.

    Holds no reference to its loop (the loop's timer holds this): the registry's weak key stays
    weak. A timer superseded by an earlier deadline is left to fire and find nothing to do.
    """

    __slots__ = ("_done", "_heap", "_order", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._done = 0
        self._timer_at = float("inf")

    def add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        when = deadline._when
        heapq.heappush(self._heap, (when, next(self._order), deadline))
        if when < self._timer_at:
            self._arm(loop, when)

    def sweep(self) -> None:
        """Drop the done entries all at once."""
        self._heap = [entry for entry in self._heap if not entry[2]._done]
        heapq.heapify(self._heap)
        self._done = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        loop.call_later(max(0.0, when - time.monotonic()), self._fire, when)
        self._timer_at = when

    def _fire(self, when: float) -> None:
        if when == self._timer_at:
            self._timer_at = float("inf")
        loop = asyncio.get_running_loop()
        # A timer may fire a little early (the loop's clock resolution, another loop's clock):
        # what is not due yet re-arms it.
        now = time.monotonic()
        heap = self._heap
        while heap:
            due, _, deadline = heap[0]
            if deadline._done:
                heapq.heappop(heap)
                self._done -= 1
                continue
            if due > now:
                if due < self._timer_at:
                    self._arm(loop, due)
                return
            heapq.heappop(heap)
            deadline.expire()


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)
"""Each loop's deadlines (the module's only state), dropped with their loop."""
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Deadlines] | None = None


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    deadlines = _per_loop.get(loop)
    if deadlines is None:
        deadlines = _per_loop[loop] = _Deadlines()
    _last = (weakref.ref(loop), deadlines)
    return deadlines


def deadline_after(delay: float) -> Deadline:
    """A block the running task must leave within `delay` seconds, else `TimeoutError` is raised
    from it (as `asyncio.timeout(delay)`)."""
    return Deadline(_deadlines_of(asyncio.get_running_loop()), time.monotonic() + delay)


def enter_deadline(when: float) -> Deadline:
    """Enter, in the running task, a block it must leave by `when` (a `time.monotonic()`
    time): leave it with `Deadline.leave`, which raises `TimeoutError` when the deadline cut
    the block short. `async with deadline_after(...)` without its two coroutines, for the hot
    path of the request tier.

    Raises:
        RuntimeError: no task is running.
    """
    loop = asyncio.get_running_loop()
    last = _last
    owner = last[1] if last is not None and last[0]() is loop else _deadlines_of(loop)
    task = _current_task(loop)
    if task is None:
        raise RuntimeError("a deadline is used inside a task")
    block = Deadline(owner, when, task, task.cancelling())
    heapq.heappush(owner._heap, (when, next(owner._order), block))
    if when < owner._timer_at:
        owner._arm(loop, when)
    return block
