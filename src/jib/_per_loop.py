"""One resource per event loop (a connection pool, a session), closed when its loop shuts down.

Connection pools, like every asyncio resource, belong to the loop that opened their connections,
so a generator reused across two `asyncio.run` calls needs one per loop. Each resource is
paired with an async generator the loop finalizes in `shutdown_asyncgens()` (which
`asyncio.run` calls before closing the loop): its `finally` closes the resource on its own loop,
instead of leaving unclosed transports behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["LoopLocks", "PerLoop", "RuntimeCache", "RuntimeResource"]

T = TypeVar("T")


class RuntimeResource:
    """Runtime state bound to this process (and often its event loops): connection pools,
    limiters, locks, caches, a loaded model and its worker thread.

    One rule for all of them, so a generator holding some copies the same way everywhere: copies
    made in this process (`copy.copy`, `copy.deepcopy`, `model_copy(deep=True)`, `wrap()`)
    share the resource, and a pickled copy (another process) gets a fresh one, made from
    `_fresh_arguments()`.
    """

    __slots__ = ()

    def _fresh_arguments(self) -> tuple[Any, ...]:
        """What the class is called with to make the fresh resource a pickled copy gets."""
        return ()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._fresh_arguments())


class RuntimeCache(dict[str, Any], RuntimeResource):
    """Values worked out once and reused per request (a label, a request's headers): shared by
    in-process copies, never pickled (it may hold a key read from the environment)."""


@dataclass
class _Entry(Generic[T]):
    resource: T
    closer: AsyncGenerator[None, None]


class PerLoop(Generic[T]):
    """Resources keyed by event loop; each lives until `aclose()` or its loop shuts down.

    Args:
        open: makes a resource (called on the loop that will use it).
        close: closes one (awaited on its own loop).
        is_closed: whether a resource was closed behind our back (then a new one is made).
    """

    def __init__(
        self,
        open: Callable[[], T],
        close: Callable[[T], Awaitable[None]],
        is_closed: Callable[[T], bool] = lambda resource: False,
    ) -> None:
        self._open = open
        self._close = close
        self._is_closed = is_closed
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[T]] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Entry[T]] | None = None

    def __len__(self) -> int:
        """How many loops have an open resource."""
        return len(self._entries)

    async def get(self) -> T:
        """The running loop's resource, opened on first use."""
        loop = asyncio.get_running_loop()
        # The last loop's entry first: a weak key lookup makes a weak reference each time.
        last = self._last
        if last is not None and last[0]() is loop and not self._is_closed(last[1].resource):
            return last[1].resource
        entry = self._entries.get(loop)
        if entry is not None and not self._is_closed(entry.resource):
            self._last = (weakref.ref(loop), entry)
            return entry.resource
        self._forget_closed_loops()
        resource = self._open()
        closer = self._close_at_shutdown(loop, resource)
        entry = self._entries[loop] = _Entry(resource, closer)
        self._last = (weakref.ref(loop), entry)
        # Runs to the `yield` without suspending, so no other task sees a half-made entry; the
        # first step registers the generator with the loop's `shutdown_asyncgens()`.
        await closer.__anext__()
        return resource

    async def aclose(self) -> None:
        """Close the running loop's resource, if it has one (a new one opens on next use)."""
        self._last = None
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.closer.aclose()

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, resource: T
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            entry = self._entries.get(loop)
            if entry is not None and entry.resource is resource:
                del self._entries[loop]
            self._last = None
            if not loop.is_closed():
                await self._close(resource)

    def _forget_closed_loops(self) -> None:
        # A loop closed without `shutdown_asyncgens()` cannot close its resource any more; drop
        # it so the loop (which its connections reference) can be collected.
        self._last = None
        for loop in [loop for loop in self._entries if loop.is_closed()]:
            closer = self._entries.pop(loop).closer
            # Finish the generator here (its `finally` skips the closed loop); left unfinished,
            # its finalizer would try to schedule `aclose()` on the closed loop and fail.
            with contextlib.suppress(StopIteration):
                closer.aclose().send(None)


class LoopLocks(RuntimeResource):
    """One `asyncio.Lock` per event loop (a lock binds to the loop that first waits on it)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Lock:
        """The running loop's lock."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            # A lock that was waited on references its loop, which would keep the weak key
            # alive: drop the locks of closed loops.
            for closed in [other for other in self._locks if other.is_closed()]:
                del self._locks[closed]
            lock = self._locks[loop] = asyncio.Lock()
        return lock
