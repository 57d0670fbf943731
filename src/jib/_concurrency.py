"""Request limiting that works across event loops.

asyncio primitives bind to the loop that first waits on them, so a generator that kept one
`asyncio.Semaphore` would fail when reused in a second `asyncio.run`. `RequestLimiter` keeps one
semaphore and pacing lock per running loop instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["RequestLimiter"]


@dataclass(slots=True)
class _LoopState:
    semaphore: asyncio.Semaphore
    pacing: asyncio.Lock
    last_start: float = field(default=float("-inf"))


class RequestLimiter:
    """At most `max_connections` requests in flight, starts spaced by `min_delay_ms`.

    Safe to share between tasks of one loop and to reuse across loops.
    """

    def __init__(self, max_connections: int, min_delay_ms: float = 0.0) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if min_delay_ms < 0:
            raise ValueError(f"min_delay_between_requests must be >= 0, not {min_delay_ms}")
        self.max_connections = max_connections
        self.min_delay_ms = min_delay_ms
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}

    @classmethod
    def matching(
        cls, current: RequestLimiter | None, max_connections: int, min_delay_ms: float
    ) -> RequestLimiter:
        """`current` if it has these settings, else a new limiter with them.

        Generators keep one limiter (shared by their `wrap()` copies) and call this on each
        request, so a changed `max_connections` takes effect at once.
        """
        if (
            current is not None
            and current.max_connections == max_connections
            and current.min_delay_ms == min_delay_ms
        ):
            return current
        return cls(max_connections, min_delay_ms)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            # A semaphore holds its loop, so weak keys would not free it: drop closed loops here.
            for closed in [old for old in self._states if old.is_closed()]:
                del self._states[closed]
            state = _LoopState(asyncio.Semaphore(self.max_connections), asyncio.Lock())
            self._states[loop] = state
        return state

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot for the duration of the block."""
        state = self._state()
        async with state.semaphore:
            if self.min_delay_ms > 0:
                async with state.pacing:
                    delay = state.last_start + self.min_delay_ms / 1000 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    state.last_start = time.monotonic()
            yield
