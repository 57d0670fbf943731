"""Rate limits hold for the whole generator, and a 429 slows it down without stalling it.

The server records when each request arrives (`time.monotonic()`, the clock the tests read too),
so the spacing the generator promises is measured where it matters: at the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.generator.faults.conftest import WITH_HEADERS, Remote
from tests.support.fault_injection import (
    At,
    Fault,
    FirstAttempts,
    RunningFaultInjection,
    answer_for,
)


def passthrough(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A `wrap()` wrapper that changes nothing: it makes a copy of the generator."""
    return call


async def test_rpm_spreads_request_starts_across_pipelines_and_copies(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    rate = 20.0  # per second
    burst = 20  # a token bucket lets one second's worth go at once
    generator = remote.generator(rpm=rate * 60, max_connections=64)
    prompts = [f"paced {i}" for i in range(60)]

    begun = time.monotonic()
    batches = await asyncio.gather(
        generator.chat().run_batch(prompts[:20]),
        generator.chat().wrap(passthrough).run_batch(prompts[20:40]),  # a copy
        generator.chat().with_retries(max_retries=1).run_batch(prompts[40:]),  # another
    )

    assert [chat.content for batch in batches for chat in batch] == list(map(answer_for, prompts))
    starts = faults.state.starts()
    assert len(starts) == 60
    # The limiter's promise, read at the server: by any moment, no more than the burst plus
    # `rate` a second have started since the three batches began, all pipelines and copies
    # together. The n-th arrival (from 1) comes at least (n - burst) / rate after `begun`. A
    # busy machine only delays requests, so it cannot break this; a copy with a limiter of its
    # own, or no pacing at all, lets the sixty through within a fraction of a second and does.
    early = [
        (number, round(start - begun, 3))
        for number, start in enumerate(sorted(starts), 1)
        if start < begun + max(0, number - burst) / rate - 1e-6
    ]
    assert not early, f"(arrival, seconds after the start) sooner than the rate allows: {early}"


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_fifty_concurrent_429s_each_wait_their_retry_after_and_slow_the_generator(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    # Every prompt's first request gets a 429 with Retry-After: 1, all fifty held until the
    # last has arrived and let go together; the retries are answered after 0.3 s. A generator
    # that ignored the 429s in its pacing would send the fifty retries together, a second later.
    faults.state.reset(FirstAttempts(1, Fault.rate_limit(retry_after=1, together=50)), delay=0.3)
    generator = remote.generator(max_connections=50, max_retry_wait=10)
    prompts = [f"busy {i}" for i in range(50)]

    chats = await generator.chat().run_batch(prompts, on_failed="include")

    assert [chat.content for chat in chats] == [answer_for(prompt) for prompt in prompts]
    assert [chat.attempts for chat in chats] == [2] * 50
    requests = faults.state.requests()
    first = {r.prompt: r for r in requests if r.attempt == 1}
    retry = {r.prompt: r for r in requests if r.attempt == 2}
    assert len(first) == len(retry) == 50 and len(requests) == 100
    early = {
        prompt: round(retry[prompt].start - (first[prompt].end or 0.0), 3)
        for prompt in prompts
        if retry[prompt].start < (first[prompt].end or 0.0) + 1.0
    }
    assert not early, f"retried sooner than Retry-After: 1 allows (seconds after the 429): {early}"
    burst = max(r.in_flight for r in first.values())
    after = max(r.in_flight for r in retry.values())
    assert burst == 50  # the 429s really came as one burst
    # Fifty 429s in a row must at least halve what the generator sends at once.
    assert after <= 25, f"{after} retries in flight at once after a burst of {burst} 429s"


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_one_429_does_not_stall_the_other_requests(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(At({1: Fault.rate_limit(retry_after=1)}))
    # Two at a time, so most prompts are still waiting for a slot when the 429 comes back.
    generator = remote.generator(max_connections=2)
    prompts = [f"steady {i}" for i in range(30)]

    chats = await generator.chat().run_batch(prompts, on_failed="include")

    assert [chat.content for chat in chats] == [answer_for(prompt) for prompt in prompts]
    requests = faults.state.requests()
    limited = requests[0]
    retry = next(r for r in requests if r.prompt == limited.prompt and r.attempt == 2)
    assert retry.start >= (limited.end or 0.0) + 1.0
    # Had the whole generator paused for the Retry-After, no other request would have started
    # between the 429 and its retry; the others went on (however slowly a busy machine sends).
    went_on = [
        r
        for r in requests
        if r.prompt != limited.prompt and (limited.end or 0.0) < r.start < retry.start
    ]
    assert went_on


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_retry_after_ms_is_honoured(remote: Remote, faults: RunningFaultInjection) -> None:
    faults.state.reset(FirstAttempts(1, Fault.rate_limit(retry_after=None, retry_after_ms=400)))
    generator = remote.generator(retry_backoff=0.001)

    chat = await generator.chat("in a moment").run()

    assert chat.content == answer_for("in a moment")
    first, retry = faults.state.requests()
    assert retry.start - (first.end or 0.0) >= 0.4
