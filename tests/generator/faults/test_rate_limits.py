"""Rate limits hold for the whole generator, and a 429 slows it down without stalling it.

The server records when each request arrives (`time.monotonic()`, the clock the tests read too),
so the spacing the generator promises is measured where it matters: at the server.
"""

from __future__ import annotations

import asyncio
import gc
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
    generator = remote.generator(rpm=rate * 60, max_connections=64)
    # The first request of an event loop sets up clients (LiteLLM's takes ~0.2 s): keep that
    # one-time shift out of the arrivals measured.
    await generator.chat("warm up").run()
    faults.state.reset()
    prompts = [f"paced {i}" for i in range(60)]

    # The server runs in this process and timestamps arrivals: a garbage collection of the
    # suite's large heap would freeze it and the client together for a few hundred ms, and the
    # requests sent meanwhile would be stamped as one burst. Keep collections out of the run.
    gc.collect()
    gc.disable()
    try:
        batches = await asyncio.gather(
            generator.chat().run_batch(prompts[:20]),
            generator.chat().wrap(passthrough).run_batch(prompts[20:40]),  # a copy
            generator.chat().with_retries(max_retries=1).run_batch(prompts[40:]),  # another
        )
    finally:
        gc.enable()

    assert [chat.content for batch in batches for chat in batch] == list(map(answer_for, prompts))
    starts = faults.state.starts()
    assert len(starts) == 60
    # A token bucket lets a burst through, then `rate` a second. Allow a burst of up to one
    # second's worth, plus two requests of slack: a window counts both its ends, and a request
    # may reach the server a little late, landing next to the one scheduled after it. In no
    # window of a third of a second or more may more requests start than that. (Shorter windows
    # measure the client's CPU, not its pacing: LiteLLM spends ~4 ms of CPU on each request, so
    # on 2 cores the burst reaches the server over ~0.1 s and the first paced requests land
    # among its tail.)
    burst = rate
    crowded = [
        (j - i + 1, round(starts[j] - starts[i], 3))
        for i in range(len(starts))
        for j in range(i + 1, len(starts))
        if starts[j] - starts[i] >= 1 / 3 and j - i + 1 > burst + rate * (starts[j] - starts[i]) + 2
    ]
    assert not crowded, f"(requests, seconds) windows above the limit: {crowded[:5]}"
    # Unpaced, the 60 would arrive within a fraction of a second; paced, after 1.95 s (the
    # first arrivals may come late behind the burst, hence 90% of it).
    assert starts[-1] - starts[0] >= 0.9 * (60 - burst - 1) / rate


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_fifty_concurrent_429s_each_wait_their_retry_after_and_slow_the_generator(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    # Every prompt's first request gets a 429 with Retry-After: 1, all fifty held and let go
    # together; the retries are answered after 0.3 s. A generator that ignored the 429s in its
    # pacing would send the fifty retries together, a second later.
    burst_ends = time.monotonic() + 1.5
    faults.state.reset(
        FirstAttempts(1, Fault.rate_limit(retry_after=1, until=burst_ends)), delay=0.3
    )
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
    assert burst >= 40  # the 429s really came as one burst
    # Fifty 429s in a row must at least halve what the generator sends at once.
    assert after <= 25, f"{after} retries in flight at once after a burst of {burst} 429s"


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_one_429_does_not_stall_the_other_requests(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(At({1: Fault.rate_limit(retry_after=1)}))
    generator = remote.generator()
    prompts = [f"steady {i}" for i in range(30)]

    chats = await generator.chat().run_batch(prompts, on_failed="include")

    assert [chat.content for chat in chats] == [answer_for(prompt) for prompt in prompts]
    requests = faults.state.requests()
    limited = requests[0]
    retry = next(r for r in requests if r.prompt == limited.prompt and r.attempt == 2)
    assert retry.start >= (limited.end or 0.0) + 1.0
    # Had the whole generator paused for the Retry-After, none of the others would be done
    # before the retry; the machine may be busy, so two thirds is enough.
    done_before = [r for r in requests if r.prompt != limited.prompt and (r.end or 0) < retry.start]
    assert len(done_before) >= 20


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_retry_after_ms_is_honoured(remote: Remote, faults: RunningFaultInjection) -> None:
    faults.state.reset(FirstAttempts(1, Fault.rate_limit(retry_after=None, retry_after_ms=400)))
    generator = remote.generator(retry_backoff=0.001)

    chat = await generator.chat("in a moment").run()

    assert chat.content == answer_for("in a moment")
    first, retry = faults.state.requests()
    assert retry.start - (first.end or 0.0) >= 0.4
