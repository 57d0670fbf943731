"""Retries are bounded: what never recovers fails clearly, soon, after a known number of tries.

Only the normalized retryable errors are retried (429, 5xx, 408/409, connection errors); a
client error is final at once, and so is a `Retry-After` longer than `max_retry_wait`.
"""

from __future__ import annotations

from collections import Counter

import pytest

import jib
from jib.errors import ServerError
from tests.generator.faults.conftest import WITH_HEADERS, Remote
from tests.support.fault_injection import (
    Always,
    Fault,
    FirstAttempts,
    RunningFaultInjection,
    answer_for,
)


async def test_an_endpoint_always_503_fails_every_chat_after_the_default_bound(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Always(Fault.error(503)))
    generator = remote.generator()  # the defaults: 5 retries, backoff from 50 ms
    prompts = [f"doomed {i}" for i in range(40)]

    chats = await generator.chat().run_batch(prompts, on_failed="include")

    assert all(chat.failed for chat in chats)
    for chat in chats:
        assert isinstance(chat.error, ServerError), repr(chat.error)
        assert chat.error.retryable
        assert chat.error.status_code == 503
        assert chat.attempts == 6
    assert faults.state.attempts() == Counter({prompt: 6 for prompt in prompts})
    assert "gave up after 6 attempts, max_retries=5" in str(chats[0].error)


async def test_the_bound_comes_from_the_identifier(faults: RunningFaultInjection) -> None:
    faults.state.reset(Always(Fault.error(503)))
    generator = jib.get_generator(
        f"openai/fault-model,api_base={faults.openai_base},api_key=sk-test,"
        "max_retries=2,retry_backoff=0.001,max_retry_wait=2"
    )

    chats = await generator.chat().run_batch(["a", "b", "c"], on_failed="include")

    assert [chat.attempts for chat in chats] == [3, 3, 3]
    assert faults.state.attempts() == Counter({"a": 3, "b": 3, "c": 3})
    assert "max_retries=2" in generator.to_identifier()


async def test_with_retries_bounds_one_pipeline_and_leaves_the_generator_alone(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Always(Fault.error(500)))
    generator = remote.generator(max_retries=4, retry_backoff=0.001)

    few = await generator.chat("few").with_retries(max_retries=1).run(on_failed="include")
    usual = await generator.chat("usual").run(on_failed="include")

    assert few.failed and few.attempts == 2
    assert usual.failed and usual.attempts == 5
    assert faults.state.attempts() == Counter({"few": 2, "usual": 5})


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    remote: Remote, faults: RunningFaultInjection, status: int
) -> None:
    faults.state.reset(FirstAttempts(2, Fault.error(status)))
    generator = remote.generator(retry_backoff=0.001)

    chat = await generator.chat("try again").run()

    assert chat.content == answer_for("try again")
    assert chat.attempts == 3
    assert faults.state.total_requests == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(
    remote: Remote, faults: RunningFaultInjection, status: int
) -> None:
    faults.state.reset(Always(Fault.error(status)))
    generator = remote.generator(max_retries=5, retry_backoff=0.001)

    chat = await generator.chat("bad request").run(on_failed="include")

    assert chat.failed
    assert isinstance(chat.error, jib.ProviderError) and not chat.error.retryable
    assert chat.error.status_code == status
    assert chat.attempts == 1
    assert faults.state.total_requests == 1


@pytest.mark.parametrize("remote", WITH_HEADERS, indirect=True)
async def test_a_retry_after_beyond_max_retry_wait_fails_at_once(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Always(Fault.rate_limit(retry_after=3600)))
    generator = remote.generator(max_retry_wait=5)

    chat = await generator.chat("come back in an hour").run(on_failed="include")

    assert isinstance(chat.error, jib.RateLimitError), repr(chat.error)
    # It says it would not wait, and sent nothing more: an hour was not sat out.
    assert "Retry-After 3600s exceeds max_retry_wait=5s, so it was not retried" in str(chat.error)
    assert chat.error.status_code == 429
    assert chat.attempts == 1
    assert faults.state.total_requests == 1
