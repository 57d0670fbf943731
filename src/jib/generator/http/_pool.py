"""One pooled httpx client per event loop, closed when that loop shuts down.

httpx clients (like every asyncio resource) belong to the loop that opened their connections,
so a generator reused across two `asyncio.run` calls needs one client per loop. Each client is
paired with an async generator the loop finalizes in `shutdown_asyncgens()` (which
`asyncio.run` calls before closing the loop): its `finally` closes the client, so pooled
connections are closed on their own loop instead of leaking as unclosed transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["LoopClients"]


@dataclass
class _Entry:
    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


class LoopClients:
    """httpx clients keyed by event loop; each lives until `aclose()` or its loop shuts down."""

    def __init__(self, max_connections: int) -> None:
        """Clients made here pool at most `max_connections` connections."""
        self.max_connections = max_connections
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = (
            weakref.WeakKeyDictionary()
        )

    def __len__(self) -> int:
        """How many loops have an open client."""
        return len(self._entries)

    async def get(self) -> httpx.AsyncClient:
        """The running loop's client, opened on first use."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is not None and not entry.client.is_closed:
            return entry.client
        self._forget_closed_loops()
        import httpx

        limits = httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
        )
        client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
        closer = self._close_at_shutdown(loop, client)
        self._entries[loop] = _Entry(client, closer)
        # Runs to the `yield` without suspending, so no other task sees a half-made entry; the
        # first step registers the generator with the loop's `shutdown_asyncgens()`.
        await closer.__anext__()
        return client

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a new one opens on next use)."""
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.closer.aclose()

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            entry = self._entries.get(loop)
            if entry is not None and entry.client is client:
                del self._entries[loop]
            if not loop.is_closed():
                await client.aclose()

    def _forget_closed_loops(self) -> None:
        # A loop closed without `shutdown_asyncgens()` cannot close its client any more; drop it
        # so the loop (which its connections reference) can be collected.
        for loop in [loop for loop in self._entries if loop.is_closed()]:
            closer = self._entries.pop(loop).closer
            # Finish the generator here (its `finally` skips the closed loop); left unfinished,
            # its finalizer would try to schedule `aclose()` on the closed loop and fail.
            with contextlib.suppress(StopIteration):
                closer.aclose().send(None)
