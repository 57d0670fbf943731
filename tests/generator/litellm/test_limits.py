"""Concurrency and pacing of LiteLLMGenerator, measured at the server.

The fault server holds answers (until enough requests are in flight at once, when a test needs
to see concurrency) and counts requests in flight; it records when each request started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import pytest

import jib
from tests.support.fault_server import RunningFaultServer


def _generator(server: RunningFaultServer, extra: str = "") -> jib.Generator:
    return jib.get_generator(f"openai/stub,api_base={server.url},api_key=sk-test{extra}")


async def test_batch_items_run_concurrently_by_default(fault_server: RunningFaultServer) -> None:
    # Answers wait until all six are in flight: only a client sending them together gets any.
    fault_server.state.reset(delay=30, together=6)

    chats = await _generator(fault_server).chat().run_batch([f"item {i}" for i in range(6)])

    assert [chat.content for chat in chats] == [f"item {i}" for i in range(6)]
    assert fault_server.state.max_in_flight == 6


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_max_connections_caps_requests_in_flight(
    fault_server: RunningFaultServer, limit: int
) -> None:
    # Answers wait until `limit` are in flight at once, so the limit is reached (not just 1),
    # however slowly the client sends; then they go, and later requests are not held.
    fault_server.state.reset(delay=30, together=limit)
    generator = _generator(fault_server, f",max_connections={limit}")

    chats = await generator.chat().run_batch([f"item {i}" for i in range(5)])

    assert len(chats) == 5 and not any(chat.failed for chat in chats)
    assert fault_server.state.max_in_flight == limit


async def test_max_connections_holds_across_concurrent_runs_of_one_generator(
    fault_server: RunningFaultServer,
) -> None:
    fault_server.state.reset(delay=0.3)
    generator = _generator(fault_server, ",max_connections=2")

    await asyncio.gather(
        generator.chat("a").run_many(3),
        generator.complete("b").run_many(3),
        generator.chat("c").wrap(lambda call: call).run(),  # a wrapped copy shares the limit
    )

    assert len(fault_server.state.requests) == 7
    assert fault_server.state.max_in_flight <= 2


async def test_min_delay_between_requests_spaces_request_starts(
    fault_server: RunningFaultServer,
) -> None:
    generator = _generator(fault_server, ",min_delay_between_requests=300")

    begun = time.monotonic()
    await generator.chat().run_batch(["a", "b", "c", "d"])

    starts = sorted(fault_server.state.starts)
    assert len(starts) == 4
    # Pacing lets the n-th request (from 0) go no sooner than n × 300 ms after the batch began;
    # a busy machine only delays arrivals, so this holds however loaded it is. Unpaced, the
    # four arrive within milliseconds of each other.
    for number, start in enumerate(starts):
        assert start >= begun + number * 0.3 - 1e-6, (number, round(start - begun, 3))


def test_generator_works_across_several_event_loops(fault_server: RunningFaultServer) -> None:
    generator = _generator(fault_server, ",max_connections=2,min_delay_between_requests=1")

    first = asyncio.run(generator.chat("first loop").run())
    second = asyncio.run(generator.chat().run_batch(["second", "loop"]))

    assert first.content == "first loop"
    assert [chat.content for chat in second] == ["second", "loop"]


async def test_wrap_applies_around_each_request(fault_server: RunningFaultServer) -> None:
    seen: list[tuple[Any, ...]] = []

    def record_calls(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen.append(args)
            return await call(*args, **kwargs)

        return wrapped

    chats = await _generator(fault_server).chat().wrap(record_calls).run_batch(["x", "y", "z"])

    assert len(seen) == 3
    assert [chat.content for chat in chats] == ["x", "y", "z"]


async def test_backoff_wrapper_retries_one_request_on_normalized_rate_limit(
    fault_server: RunningFaultServer,
) -> None:
    retry = backoff.on_exception(backoff.constant, jib.RETRYABLE_ERRORS, max_tries=4, interval=0)
    # max_retries=0 turns jib's own retries off, leaving them to the wrapper.
    generator = _generator(fault_server, ",max_connections=1,max_retries=0").wrap(retry)

    chats = await generator.chat().run_batch(["steady", "flaky:2:a"])

    assert [chat.failed for chat in chats] == [False, False]
    assert chats[1].content == "flaky:2:a"
    prompts = [body["messages"][-1]["content"] for body in fault_server.state.requests]
    assert prompts.count("flaky:2:a") == 3  # two 429s, then the answer
    assert prompts.count("steady") == 1  # the retry did not resend the whole batch
