"""The limits a generator puts on its requests: slots in flight, pacing and rate limits.

One `RequestLimiter` belongs to a generator and is shared by all its copies (`wrap()`,
`model_copy`), so every pipeline using the generator shares its limits. It holds:

- **slots**: at most `max_connections` requests in flight. The limit adapts: a rate-limited
  answer (429) halves it, each success raises it by one again, up to `max_connections`. So a
  burst of 429s slows the whole generator, while one 429 among many successes costs little.
- **pacing and rate limits**: `min_delay_between_requests` (ms between starts), `rpm`
  (requests per minute) and `tpm` (tokens per minute), each a token bucket written as GCRA
  ("generic cell rate algorithm"): a bucket keeps the theoretical time its next unit is free
  (`tat`) and a request reserves its units up front, so concurrent requests queue fairly with no
  lock and no polling. `rpm` and `tpm` allow a burst of one second's worth; `tpm` charges an
  estimate first and settles with the usage the provider reports (a large request may go into
  debt, which later requests wait out).

asyncio primitives bind to the loop that first waits on them, so the limiter keeps its state per
running event loop (a generator reused by a second `asyncio.run` gets fresh state) and drops the
state of closed loops.

Written here rather than taken from a library (aiolimiter): jib needs adaptive slots, token
costs settled after the fact, reservations checked against a deadline and per-loop state, which
no small library combines.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from jib._per_loop import RuntimeResource

__all__ = ["LoopLimits", "RateExceedsDeadline", "RequestLimiter"]


class RateExceedsDeadline(Exception):
    """Waiting for the pacing or rate limits would take a request past its deadline."""

    def __init__(self, wait: float, setting: str) -> None:
        self.wait = wait
        self.setting = setting
        super().__init__(f"{setting} would delay the request by {wait:.3g}s")


@dataclass(slots=True)
class _Bucket:
    """One GCRA bucket: `interval` seconds per unit, a burst of `burst` units.

    A request costs one unit, or its tokens when `per_token` (the `tpm` bucket). `setting` names
    the limit for messages (`rpm=60`).
    """

    interval: float
    burst: float
    setting: str
    per_token: bool = False
    tat: float = float("-inf")

    def allowed_at(self, now: float) -> float:
        return max(now, self.tat - (self.burst - 1.0) * self.interval)

    def charge(self, start: float, units: float) -> None:
        self.tat = max(self.tat, start) + units * self.interval


@dataclass(slots=True)
class LoopLimits:
    """One loop's share of a `RequestLimiter`: its slots in flight, waiters and buckets.

    `take_now` and `give_back` are the success path of `RequestLimiter.acquire`/`release`
    without a coroutine or a loop lookup: the request tier finds the state once per item.
    """

    limit: float
    max_connections: int
    in_flight: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    buckets: list[_Bucket] = field(default_factory=list)

    def take_now(self) -> bool:
        """Take a slot if one is free now, no one waits before us and nothing paces requests
        (then no `pace` is needed either); `False` when `acquire` and `pace` must be awaited."""
        if self.buckets or self.waiters or self.in_flight >= int(self.limit):
            return False
        self.in_flight += 1
        return True

    def queue(self) -> asyncio.Future[None] | None:
        """Take a slot now (`None`) when one is free and no one waits before us, else join
        the queue: the future is done when a slot is handed over. A wait given up (cancelled)
        must call `leave_queue`."""
        if self.in_flight < int(self.limit) and not self.waiters:
            self.in_flight += 1
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    async def take(self) -> None:
        """Wait for a slot (`queue`, then the wait; a wait given up leaves the queue)."""
        waiter = self.queue()
        if waiter is not None:
            try:
                await waiter
            except BaseException:
                self.leave_queue(waiter)
                raise

    def leave_queue(self, waiter: asyncio.Future[None]) -> None:
        """Leave the queue after the wait for `waiter` was given up; a slot handed over just
        then is passed on."""
        if waiter.done() and not waiter.cancelled():
            self.in_flight -= 1
            self.wake()
        elif waiter in self.waiters:  # `wake` drops waiters cancelled before their turn
            self.waiters.remove(waiter)

    def give_back(self, *, rate_limited: bool = False, succeeded: bool = False) -> None:
        """Give a slot back; a rate-limited answer halves the limit, a success grows it."""
        if succeeded and not rate_limited:
            self.give_back_ok()
            return
        self.in_flight -= 1
        if rate_limited:
            self.limit = max(1.0, self.limit / 2)
        if self.waiters:
            self.wake()

    def give_back_ok(self) -> None:
        """`give_back(succeeded=True)`, for the success path of every request."""
        self.in_flight -= 1
        if self.limit < self.max_connections:
            self.limit = min(float(self.max_connections), self.limit + 1.0)
        if self.waiters:
            self.wake()

    def wake(self) -> None:
        """Hand free slots to the waiters, in order (skipping the cancelled)."""
        while self.waiters and self.in_flight < int(self.limit):
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


class RequestLimiter(RuntimeResource):
    """Slots in flight (adaptive), pacing, `rpm` and `tpm` for one generator's requests.

    Safe to share between the tasks of one loop and to reuse across loops; not thread-safe.
    """

    def __init__(
        self,
        max_connections: int,
        min_delay_ms: float = 0.0,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if not 0 <= min_delay_ms < float("inf"):
            raise ValueError(f"min_delay_between_requests must be >= 0, not {min_delay_ms}")
        for name, rate in (("rpm", rpm), ("tpm", tpm)):
            if rate is not None and not 0 < rate < float("inf"):
                raise ValueError(f"{name} must be a positive number, not {rate}")
        self.max_connections = max_connections
        self.min_delay_ms = min_delay_ms
        self.rpm = rpm
        self.tpm = tpm
        self._states: dict[asyncio.AbstractEventLoop, LoopLimits] = {}
        # The last loop's state, found without a dict lookup (the common case by far). Closed
        # loops are dropped from `_states` when a new loop first asks.
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_state: LoopLimits | None = None

    def _fresh_arguments(self) -> tuple[int, float, float | None, float | None]:
        return (self.max_connections, self.min_delay_ms, self.rpm, self.tpm)

    @property
    def settings(self) -> tuple[int, float, float | None, float | None]:
        """`(max_connections, min_delay_ms, rpm, tpm)`."""
        return (self.max_connections, self.min_delay_ms, self.rpm, self.tpm)

    def state(self) -> LoopLimits:
        """The running loop's state (made on first use)."""
        loop = asyncio.get_running_loop()
        if loop is self._last_loop:
            return self._last_state  # type: ignore[return-value]
        state = self._states.get(loop)
        if state is None:
            # Futures hold their loop, so weak keys would not free it: drop closed loops here.
            for closed in [old for old in self._states if old.is_closed()]:
                del self._states[closed]
            state = self._states[loop] = LoopLimits(
                float(self.max_connections), self.max_connections
            )
            if self.min_delay_ms > 0:
                setting = f"min_delay_between_requests={self.min_delay_ms:g}"
                state.buckets.append(_Bucket(self.min_delay_ms / 1000, 1.0, setting))
            for name, rate in (("rpm", self.rpm), ("tpm", self.tpm)):
                if rate is not None:
                    bucket = _Bucket(60.0 / rate, max(1.0, rate / 60), f"{name}={rate:g}")
                    bucket.per_token = name == "tpm"
                    state.buckets.append(bucket)
        self._last_loop, self._last_state = loop, state
        return state

    # -- slots ---------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for a request slot. Pair every successful call with one `release`."""
        await self.state().take()

    def release(self, *, rate_limited: bool = False, succeeded: bool = False) -> None:
        """Give a slot back; a rate-limited answer halves the limit, a success grows it."""
        self.state().give_back(rate_limited=rate_limited, succeeded=succeeded)

    def current_limit(self) -> int:
        """The adaptive in-flight limit now, on the running loop."""
        return int(self.state().limit)

    # -- pacing and rates ----------------------------------------------------------------------

    async def pace(self, tokens: int, deadline: float | None) -> None:
        """Wait until pacing and the rate limits let a request of about `tokens` tokens start.

        Raises:
            RateExceedsDeadline: the wait would end after `deadline` (a `time.monotonic()`
                time); nothing is reserved then.
        """
        state = self.state()
        if not state.buckets:
            return
        now = time.monotonic()
        start, setting = now, ""
        for bucket in state.buckets:
            allowed = bucket.allowed_at(now)
            if allowed > start:
                start, setting = allowed, bucket.setting
        if deadline is not None and start > deadline:
            raise RateExceedsDeadline(start - now, setting)
        for bucket in state.buckets:
            bucket.charge(start, float(tokens) if bucket.per_token else 1.0)
        if start > now:
            await asyncio.sleep(start - now)

    def settle_tokens(self, estimated: int, actual: int) -> None:
        """Correct the `tpm` charge of a finished request by the tokens it really used."""
        for bucket in self.state().buckets:
            if bucket.per_token:
                bucket.tat += (actual - estimated) * bucket.interval
