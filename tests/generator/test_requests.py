"""The request tier (`RequestGenerator`): shared limits, retries, budgets, attempts, wrappers.

These use `CallbackGenerator` and small subclasses, which sit on the same tier as the LiteLLM and
HTTP generators; the fault-injection suite (tests/generator/test_faults.py) drives the real
providers against servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import pickle
import time
from collections.abc import Sequence
from typing import Any

import backoff
import pytest

import jib
from jib import GenerateParams, Message
from jib.errors import (
    AuthenticationError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from jib.generator import RequestGenerator
from jib.testing import CallbackGenerator, EchoGenerator


class Flaky:
    """A callback failing each prompt's first `failures` calls with `error`, then echoing."""

    def __init__(self, failures: int, error: type[jib.ProviderError] = ServerError, **kw: Any):
        self.failures = failures
        self.error = error
        self.kw = kw
        self.calls: dict[str, list[float]] = {}

    def __call__(self, messages: list[Message], params: GenerateParams) -> str:
        prompt = messages[-1].content
        times = self.calls.setdefault(prompt, [])
        times.append(time.monotonic())
        if len(times) <= self.failures:
            raise self.error(f"injected {len(times)}", **self.kw)
        return f"echo {prompt}"


def gen(callback: Any, **kwargs: Any) -> CallbackGenerator:
    kwargs.setdefault("retry_backoff", 0.001)
    return CallbackGenerator(model="cb", callback=callback, **kwargs)


# -- retries -------------------------------------------------------------------------------------


async def test_transient_failures_are_retried_and_attempts_recorded() -> None:
    flaky = Flaky(2, ServerError, status_code=503)
    chats = await gen(flaky).chat().run_batch(["a", "b"])
    assert [c.content for c in chats] == ["echo a", "echo b"]
    assert [c.attempts for c in chats] == [3, 3]
    assert all(c.latency_ms is not None and c.latency_ms > 0 for c in chats)


async def test_errors_that_need_a_fix_are_not_retried() -> None:
    flaky = Flaky(1, AuthenticationError, status_code=401)
    chat = await gen(flaky).chat("a").run(on_failed="include")
    assert chat.failed and isinstance(chat.error, AuthenticationError)
    assert chat.attempts == 1
    assert len(flaky.calls["a"]) == 1


async def test_an_item_whose_retries_run_out_comes_back_failed_with_its_attempts() -> None:
    flaky = Flaky(100, ServerError, status_code=503)
    chats = await gen(flaky, max_retries=2).chat().run_batch(["a", "b"], on_failed="include")
    assert all(c.failed for c in chats)
    assert [c.attempts for c in chats] == [3, 3]
    assert isinstance(chats[0].error, ServerError) and chats[0].error.retryable
    assert "gave up after 3 attempts, max_retries=2" in str(chats[0].error)
    assert chats[0].to_dict()["attempts"] == 3


async def test_a_retry_after_a_429_waits_at_least_its_retry_after() -> None:
    flaky = Flaky(1, RateLimitError, status_code=429, retry_after=0.3)
    chat = await gen(flaky).chat("a").run()
    first, second = flaky.calls["a"]
    assert second - first >= 0.3
    assert chat.attempts == 2


async def test_a_retry_after_beyond_max_retry_wait_fails_at_once() -> None:
    flaky = Flaky(1, RateLimitError, status_code=429, retry_after=120)
    chat = await gen(flaky, max_retry_wait=5).chat("a").run(on_failed="include")
    # The tier says it refused to wait, and nothing was sent again: it did not sit out the wait.
    assert "Retry-After 120s exceeds max_retry_wait=5s, so it was not retried" in str(chat.error)
    assert chat.attempts == 1 and len(flaky.calls["a"]) == 1


async def test_with_retries_sets_retries_per_pipeline_and_leaves_the_generator_alone() -> None:
    flaky = Flaky(100, ServerError, status_code=503)
    generator = gen(flaky, max_retries=4)
    chat = await generator.chat("a").with_retries(max_retries=0).run(on_failed="include")
    assert chat.attempts == 1
    assert generator.max_retries == 4
    assert "max_retries" not in (chat.generator_id or "")  # the record keeps the generator as given
    with pytest.raises(ValueError, match="max_retries"):
        generator.chat("a").with_retries(max_retries=-1)
    with pytest.raises(TypeError, match="sends no requests"):
        EchoGenerator(model="e").chat("a").with_retries(max_retries=1)


async def test_retries_are_settable_from_the_identifier() -> None:
    generator = jib.get_generator("http!m,max_retries=2,retry_backoff=0.01,max_retry_wait=5,rpm=60")
    assert isinstance(generator, RequestGenerator)
    assert (generator.max_retries, generator.retry_backoff, generator.max_retry_wait) == (
        2,
        0.01,
        5,
    )
    assert (
        generator.to_identifier()
        == ("http!m,max_retries=2,retry_backoff=0.01,max_retry_wait=5.0,rpm=60.0")
        or "max_retries=2" in generator.to_identifier()
    )


@pytest.mark.parametrize(
    "setting", ["max_retries=-1", "retry_backoff=nan", "max_retry_wait=inf", "rpm=0", "tpm=-5"]
)
def test_bad_retry_and_rate_settings_are_refused(setting: str) -> None:
    with pytest.raises(jib.InvalidGeneratorError, match=setting.split("=")[0]):
        jib.get_generator(f"http!m,{setting}")


async def test_a_backoff_wrap_still_works_on_top_of_jibs_retries() -> None:
    flaky = Flaky(2, ServerError, status_code=503)
    retry = backoff.on_exception(
        backoff.constant, jib.errors.RETRYABLE_ERRORS, interval=0, max_tries=3
    )
    chat = await gen(flaky, max_retries=0).chat("a").wrap(retry).run()
    assert chat.content == "echo a"
    assert chat.attempts == 3  # every attempt counted, whoever retried


# -- limits --------------------------------------------------------------------------------------


def peak_counter() -> tuple[Any, list[int]]:
    state = {"now": 0}
    peak = [0]

    async def slow(messages: list[Message], params: GenerateParams) -> str:
        state["now"] += 1
        peak[0] = max(peak[0], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return "ok"

    return slow, peak


async def test_a_copy_made_before_the_first_request_shares_the_limit() -> None:
    slow, peak = peak_counter()
    generator = gen(slow, max_connections=2)
    copy = generator.wrap(lambda call: call)  # made before any request
    await asyncio.gather(generator.chat().run_batch(["a"] * 6), copy.chat().run_batch(["b"] * 6))
    assert peak[0] == 2


async def test_a_pickled_generator_gets_a_limiter_of_its_own() -> None:
    generator = jib.get_generator("http!m,max_connections=3")
    clone = pickle.loads(pickle.dumps(generator))
    assert clone._request_limiter() is not generator._request_limiter()
    assert clone._request_limiter().settings == generator._request_limiter().settings


def rate_limited_once() -> Any:
    """A callback whose first chat saying "once" is refused with a 429; every other says ok."""
    seen: list[int] = []

    def once(messages: list[Message], params: GenerateParams) -> str:
        if messages[-1].content == "once" and not seen:
            seen.append(1)
            raise RateLimitError("slow down", status_code=429)
        return "ok"

    return once


async def test_a_429_halves_the_in_flight_limit_and_successes_grow_it_back() -> None:
    generator = gen(rate_limited_once(), max_connections=8)
    limiter = generator._request_limiter()
    await generator.chat("once").run()
    # one 429 halved the limit to 4, the success after it raised it to 5
    assert limiter.current_limit() == 5
    await generator.chat().run_batch(["x", "y", "z"])
    assert limiter.current_limit() == 8


# -- with_concurrency: `jib run -c N` raising an unset max_connections ---------------------------


def holding(target: int) -> tuple[Any, list[int]]:
    """A callback answering once `target` calls are in flight (or after a second without one
    more), and the peak it saw."""
    state = {"now": 0}
    peak = [0]
    full = asyncio.Event()

    async def hold(messages: list[Message], params: GenerateParams) -> str:
        state["now"] += 1
        peak[0] = max(peak[0], state["now"])
        if state["now"] >= target:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), 1.0)
        except asyncio.TimeoutError:  # TimeoutError from 3.11 on
            full.set()
        state["now"] -= 1
        return "ok"

    return hold, peak


async def test_with_concurrency_raises_an_unset_cap_and_keeps_the_identifier() -> None:
    hold, peak = holding(32)
    generator = gen(hold)
    raised = generator.with_concurrency(32)
    assert raised is not generator
    assert raised.max_connections == 10 and raised.model_fields_set == generator.model_fields_set
    assert raised == generator
    assert raised._request_limiter().settings[0] == 32
    assert generator._request_limiter().settings[0] == 10  # the original keeps its own
    await raised.chat().run_batch(["x"] * 40)
    assert peak[0] == 32
    # copies of the raised generator share its limiter
    assert raised.wrap(lambda call: call)._request_limiter() is raised._request_limiter()
    assert raised.with_retries(max_retries=1)._request_limiter() is raised._request_limiter()


def test_with_concurrency_keeps_the_identifier_and_an_identifier_s_cap() -> None:
    capped = jib.get_generator("http!m,max_connections=4")
    assert capped.with_concurrency(32) is capped
    assert capped._request_limiter().settings[0] == 4
    read_back = jib.get_generator(capped.to_identifier())  # as a stored identifier is
    assert read_back.with_concurrency(32) is read_back
    uncapped = jib.get_generator("http!m")
    assert uncapped.with_concurrency(3) is uncapped
    assert uncapped._request_limiter().settings[0] == 10
    raised = uncapped.with_concurrency(32)
    assert raised.to_identifier() == uncapped.to_identifier() == "http!m"
    assert raised._request_limiter().settings[0] == 32
    assert pickle.loads(pickle.dumps(raised))._request_limiter().settings[0] == 32
    assert raised.with_concurrency(16) is raised  # already higher
    assert raised.with_concurrency(64)._request_limiter().settings[0] == 64
    with pytest.raises(ValueError, match="at least 1"):
        uncapped.with_concurrency(0)


async def test_a_429_halves_the_raised_cap_and_successes_grow_it_back_to_it() -> None:
    generator = gen(rate_limited_once())
    raised = generator.with_concurrency(32)
    limiter = raised._request_limiter()
    await raised.chat("once").run()
    assert limiter.current_limit() == 17  # halved to 16, one success after it
    await raised.chat().run_batch(["x"] * 30)
    assert limiter.current_limit() == 32
    assert generator._request_limiter().current_limit() == 10


def assert_paced(starts: list[float], begun: float, burst: int, interval: float) -> None:
    """No more requests started by any moment than the limiter allows since `begun`.

    A token bucket lets `burst` requests go at once and one more each `interval`, so the n-th
    start (from 1) comes at least `(n - burst) * interval` after the batch began. A busy machine
    only makes starts later, never earlier, so this holds however loaded it is; an unpaced
    batch, whose starts all come within milliseconds, fails it.
    """
    for number, start in enumerate(sorted(starts), 1):
        allowed = begun + max(0, number - burst) * interval
        assert start >= allowed - 1e-6, (number, round(start - begun, 3))


async def test_rpm_spreads_request_starts() -> None:
    starts: list[float] = []

    def record(messages: list[Message], params: GenerateParams) -> str:
        starts.append(time.monotonic())
        return "ok"

    # 1,200 per minute: a burst of 20, then one every 50 ms.
    begun = time.monotonic()
    await gen(record, rpm=1200).chat().run_batch(["x"] * 30)
    assert len(starts) == 30
    assert_paced(starts, begun, burst=20, interval=0.05)


async def test_tpm_makes_the_next_request_wait_out_the_tokens_of_the_last() -> None:
    starts: list[float] = []

    def record(messages: list[Message], params: GenerateParams) -> str:
        starts.append(time.monotonic())
        return "ok"

    # 600 tokens per minute = 10 per second; each request is charged about 20 tokens.
    generator = gen(record, tpm=600, max_connections=1)
    begun = time.monotonic()
    await generator.chat().with_(max_tokens=20).run_batch(["x", "y"])
    # The first may go at once (a burst of one second's worth); the second waits until the
    # first one's 20 tokens, less that burst, have drained: at least 1 s after the batch began.
    assert len(starts) == 2 and starts[1] >= begun + 1.0


async def test_pacing_longer_than_the_timeout_fails_at_once_instead_of_hanging() -> None:
    generator = gen(lambda m, p: "ok", min_delay_between_requests=3_600_000)
    chats = await generator.chat().with_(timeout=2).run_batch(["a", "b"], on_failed="include")
    assert not chats[0].failed
    assert chats[1].failed and isinstance(chats[1].error, ProviderTimeoutError)
    # Refused up front, saying why: had it waited for its turn, the error would be the timeout's
    # "no answer within 2s".
    assert "min_delay_between_requests=3.6e+06 would delay this request" in str(chats[1].error)


async def test_the_timeout_bounds_attempts_and_waits_together() -> None:
    flaky = Flaky(100, RateLimitError, status_code=429, retry_after=0.4)
    chat = await gen(flaky).chat("a").with_(timeout=1).run(on_failed="include")
    calls = flaky.calls["a"]
    # Each retry waits out the Retry-After, and none starts a wait that would end past the
    # timeout: at most three attempts (at 0, 0.4 and 0.8 s, later on a busy machine), not the
    # six that max_retries allows, and the tier says why it stopped.
    assert all(later - earlier >= 0.4 for earlier, later in itertools.pairwise(calls))
    assert chat.attempts == len(calls) <= 3
    assert "not retried: its timeout of 1s would pass" in str(chat.error)


async def test_a_request_that_hangs_fails_with_the_timeout() -> None:
    cancelled: list[str] = []

    async def hang(messages: list[Message], params: GenerateParams) -> str:
        try:
            await asyncio.Event().wait()  # never answers
        except asyncio.CancelledError:
            cancelled.append(messages[-1].content)
            raise
        return "never"

    chat = await gen(hang).chat("a").with_(timeout=0.2).run(on_failed="include")
    # The tier reports its budget ran out and cut the hanging request off (without a timeout
    # the test would hang instead).
    assert isinstance(chat.error, ProviderTimeoutError)
    assert "no answer within 0.2s" in str(chat.error)
    assert cancelled == ["a"]


def never_answering() -> tuple[asyncio.Event, Any]:
    """A callback that never answers, and the event it sets once it is called."""
    started = asyncio.Event()

    async def slow(messages: list[Message], params: GenerateParams) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    return started, slow


async def test_cancelling_a_batch_leaves_no_task_and_frees_every_slot() -> None:
    started, slow = never_answering()
    generator = gen(slow, max_connections=4)
    before = asyncio.all_tasks()
    task = asyncio.ensure_future(generator.chat().run_batch(["x"] * 20))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
    limiter = generator._request_limiter()
    state = limiter.state()
    assert state.in_flight == 0 and not state.waiters


async def test_cancelling_a_batch_of_one_frees_its_slot() -> None:
    # A batch of one runs in the caller's task (no task of its own): its cancellation is the
    # caller's, and the slot still goes back.
    started, slow = never_answering()
    generator = gen(slow, max_connections=1)
    task = asyncio.ensure_future(generator.chat("x").run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = generator._request_limiter().state()
    assert state.in_flight == 0 and not state.waiters
    assert (await gen(lambda m, p: "next", max_connections=1).chat("y").run()).content == "next"


async def test_a_batch_of_one_returns_its_failure_and_attempts() -> None:
    flaky = Flaky(5, ServerError, status_code=503)
    (result,) = await gen(flaky, max_retries=1).generate_messages(
        [[Message("user", "a")]], [GenerateParams()]
    )
    assert isinstance(result, ServerError)
    assert result.attempts == 2


async def test_a_wrapped_item_counts_latency_from_its_first_request() -> None:
    flaky = Flaky(2, ServerError, status_code=503)
    retry = backoff.on_exception(
        backoff.constant, jib.errors.RETRYABLE_ERRORS, interval=0.05, max_tries=3, jitter=None
    )
    chat = await gen(flaky, max_retries=0).chat("a").wrap(retry).run()
    assert chat.attempts == 3
    assert chat.latency_ms is not None and chat.latency_ms >= 100  # both waits included


async def test_results_of_a_batch_come_back_in_order_whatever_finishes_first() -> None:
    async def reply(messages: list[Message], params: GenerateParams) -> str:
        prompt = messages[-1].content
        await asyncio.sleep(0.001 * (10 - int(prompt)))
        if prompt in ("3", "7"):
            raise AuthenticationError(f"no {prompt}")
        return f"answer {prompt}"

    results = await gen(reply, max_connections=10).generate_messages(
        [[Message("user", str(i))] for i in range(10)], [GenerateParams()] * 10
    )
    for i, result in enumerate(results):
        if i in (3, 7):
            assert isinstance(result, AuthenticationError) and result.attempts == 1
        else:
            assert not isinstance(result, BaseException)
            assert result.message.content == f"answer {i}"


# -- writing a generator -------------------------------------------------------------------------


class Shout(RequestGenerator):
    """A request-based generator in one method: the README's example shape."""

    async def request_message(self, messages: Sequence[Message], params: GenerateParams) -> str:
        return messages[-1].content.upper()


async def test_one_method_is_a_whole_generator_with_limits_and_retries() -> None:
    chat = await Shout(model="shout").chat("hi").run()
    assert chat.content == "HI"
    assert chat.last.role == "assistant"
    assert chat.attempts == 1
    with pytest.raises(NotImplementedError, match="does not support text completion"):
        Shout(model="shout").complete("hi")


async def test_the_batch_interface_reports_a_missing_request_method_clearly() -> None:
    with pytest.raises(NotImplementedError, match="request_text"):
        await Shout(model="shout").generate_texts(["a"], [GenerateParams()])


async def test_an_empty_batch_is_an_empty_answer() -> None:
    generator = CallbackGenerator(model="m", callback=lambda messages, params: "hi")

    assert await generator.generate_messages([], []) == []
    assert await generator.generate_texts([], []) == []


WRAPPER_SAW: contextvars.ContextVar[str] = contextvars.ContextVar("wrapper_saw", default="unset")


async def test_a_wrapper_setting_a_context_variable_keeps_it_to_its_item() -> None:
    def marking(call: Any) -> Any:
        async def wrapped(messages: Sequence[Message], params: GenerateParams) -> Any:
            WRAPPER_SAW.set(messages[-1].content)
            return await call(messages, params)

        return wrapped

    generator = CallbackGenerator(model="m", callback=lambda messages, params: "hi")
    chats = await generator.wrap(marking).chat().run_batch(["a", "b"])

    assert [chat.content for chat in chats] == ["hi", "hi"]
    assert WRAPPER_SAW.get() == "unset"
