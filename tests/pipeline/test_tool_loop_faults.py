"""A thousand tool-calling chats through a fifth of faults: every chat finishes right, once.

The fault-injection server (tests/support/fault_injection.py) plays a model that, asked
`question N`, calls two tools at once (`double(n=N)`, `square(n=N)`) and then answers with their
results; it fails a seeded fifth of all requests with every kind of fault it has. Each round's
request is retried alone by the generator, so no chat may lose a round, a tool result or its
answer, and the attempts a chat counts are the requests its rounds took.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import jib
from tests.support.fault_injection import (
    Fault,
    RunningFaultInjection,
    Seeded,
    run_fault_injection,
)

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
# At a fifth of attempts failing, 8 retries leave a 1-in-10^7 chance per request of running out.
FAST_RETRIES = "max_retries=8,retry_backoff=0.01,max_connections=64"
CHATS = 1000


@pytest.fixture(scope="module")
def faults() -> Iterator[RunningFaultInjection]:
    with run_fault_injection() as server:
        yield server


def double(n: int) -> int:
    """Double a number."""
    return 2 * n


async def square(n: int) -> int:
    """Square a number."""
    await asyncio.sleep(0)
    return n * n


def reply(body: dict[str, Any]) -> dict[str, Any]:
    """The model: call both tools on the question's number, then answer with their results."""
    messages = body["messages"]
    if messages[-1]["role"] == "user":
        n = int(messages[-1]["content"].split()[1])
        calls = [
            {
                "id": f"{name}-{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"n": n})},
            }
            for name in ("double", "square")
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls}
    results = {
        m["tool_call_id"].split("-")[0]: m["content"] for m in messages if m["role"] == "tool"
    }
    return {
        "role": "assistant",
        "content": f"double {results['double']}, square {results['square']}",
    }


@pytest.mark.parametrize("provider", ["openai", "litellm"])
async def test_a_thousand_tool_chats_through_a_fifth_of_faults_lose_nothing(
    faults: RunningFaultInjection, provider: str
) -> None:
    faults.state.reset(Seeded(seed=18, fraction=0.2, faults=FAULT_MIX), reply=reply)
    prefix = "openai!fault-model" if provider == "openai" else "openai/fault-model"
    generator = jib.get_generator(
        f"{prefix},api_base={faults.openai_base},api_key=sk-f,{FAST_RETRIES}"
    )
    questions = [f"question {n}" for n in range(CHATS)]

    chats = await generator.chat().using(double, square).run_batch(questions, on_failed="include")

    assert [repr(chat.error) for chat in chats if chat.failed][:5] == []
    assert [chat.content for chat in chats] == [
        f"double {2 * n}, square {n * n}" for n in range(CHATS)
    ]
    for n, chat in enumerate(chats):
        assert [m.role for m in chat.generated] == ["assistant", "tool", "tool", "assistant"]
        assert [m.tool_call_id for m in chat.generated[1:3]] == [f"double-{n}", f"square-{n}"]
    state = faults.state
    # One good answer per round of every chat: nothing lost, nothing answered twice.
    assert state.answered() == Counter(questions) + Counter(str(n * n) for n in range(CHATS))
    injected = state.faults()
    assert set(injected) == FAILING_LABELS
    assert sum(injected.values()) >= 300  # a fifth of ~2,500 requests, less the slow ones
    # A chat's attempts are the requests of both its rounds; together, every request sent.
    attempts = state.attempts()
    assert [chat.attempts for chat in chats] == [
        attempts[f"question {n}"] + attempts[str(n * n)] for n in range(CHATS)
    ]
    assert sum(chat.attempts or 0 for chat in chats) == state.total_requests
