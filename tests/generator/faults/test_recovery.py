"""Every remote provider recovers from transient faults: all answers right, in order, once each.

The server fails a seeded fifth of all requests with every kind of fault it has (no long
`Retry-After`); the generator's built-in retries must bring every item back with its own answer.
"""

from __future__ import annotations

from collections import Counter

from jib.chat import Chat
from tests.generator.faults.conftest import Remote
from tests.support.fault_injection import Fault, RunningFaultInjection, Seeded, answer_for

FAULT_MIX = [
    Fault.rate_limit(retry_after=0, retry_after_ms=20),
    Fault.error(500),
    Fault.error(503),
    Fault.reset(),
    Fault.drop(),
    Fault.truncated(),
    Fault.slow(0.05),
]
FAILING_LABELS = {"429", "500", "503", "reset", "drop", "truncated"}
# At a fifth of attempts failing, 8 retries leave a 1-in-10^7 chance per item of running out.
FAST_RETRIES = {"max_retries": 8, "retry_backoff": 0.01}


def failures(records: list[Chat]) -> list[str]:
    """What went wrong with the failed records, for an assertion message."""
    return [f"{chat.messages[-1].content}: {chat.error!r}" for chat in records if chat.failed][:5]


async def test_a_thousand_chats_through_a_fifth_of_faults_all_come_back_right(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Seeded(seed=10, fraction=0.2, faults=FAULT_MIX))
    generator = remote.generator(max_connections=64, **FAST_RETRIES)
    prompts = [f"question {i}" for i in range(1000)]

    chats = await generator.chat().run_batch(prompts, on_failed="include")

    assert not failures(chats), failures(chats)
    assert [chat.content for chat in chats] == [answer_for(prompt) for prompt in prompts]
    state = faults.state
    assert state.answered() == Counter(prompts)  # one good answer each: nothing sent twice
    injected = state.faults()
    assert set(injected) == FAILING_LABELS
    assert sum(injected.values()) >= 150  # a fifth of ~1,250 requests, less the slow ones
    # Every failed request was retried once more, and nothing else was sent.
    assert state.total_requests == len(prompts) + sum(injected.values())
    attempts = state.attempts()
    assert [chat.attempts for chat in chats] == [attempts[prompt] for prompt in prompts]
    assert sum(chat.attempts or 0 for chat in chats) == state.total_requests


async def test_completions_recover_from_faults_too(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Seeded(seed=11, fraction=0.2, faults=FAULT_MIX))
    generator = remote.generator(max_connections=32, **FAST_RETRIES)
    texts = [f"complete {i}" for i in range(200)]

    completions = await generator.complete("").run_batch(texts, on_failed="include")

    assert [c.error for c in completions if c.failed] == []
    assert [c.generated for c in completions] == [answer_for(text) for text in texts]
    assert sum(c.attempts or 0 for c in completions) == faults.state.total_requests


async def test_run_batch_keeps_input_order_under_faults(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    # Slow answers of different lengths make later items finish first.
    mix = [*FAULT_MIX, Fault.slow(0.01), Fault.slow(0.2), Fault.slow(0.4)]
    faults.state.reset(Seeded(seed=12, fraction=0.4, faults=mix))
    generator = remote.generator(max_connections=32, **FAST_RETRIES)
    prompts = [f"item {i:03d}" for i in range(200)]

    chats = await generator.chat("Answer briefly.").run_batch(prompts, on_failed="include")

    assert [chat.messages[-1].content for chat in chats] == prompts
    assert not failures(chats), failures(chats)
    assert [chat.content for chat in chats] == [answer_for(prompt) for prompt in prompts]
    answered = [r.end or 0.0 for r in faults.state.requests() if r.outcome == "answered"]
    assert answered != sorted(answered)  # the server did answer out of order


async def test_run_many_returns_every_answer_once_under_faults(
    remote: Remote, faults: RunningFaultInjection
) -> None:
    faults.state.reset(Seeded(seed=13, fraction=0.3, faults=FAULT_MIX))
    generator = remote.generator(max_connections=16, **FAST_RETRIES)

    chats = await generator.chat("the same question").run_many(60, on_failed="include")

    assert not failures(chats), failures(chats)
    assert [chat.content for chat in chats] == [answer_for("the same question")] * 60
    assert faults.state.answered() == Counter({"the same question": 60})
    assert sum(chat.attempts or 0 for chat in chats) == faults.state.total_requests
