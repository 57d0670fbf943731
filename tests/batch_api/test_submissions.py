"""Submitting batches when the provider refuses one: a refusal fails only the requests it is
about, never the run. Against the server on 127.0.0.1 speaking both batch APIs."""

from __future__ import annotations

import re

import pytest

import jib
from jib.batch_api import run_with_batch_api
from jib.batch_api._engine import MAX_SPLITS
from jib.errors import BadRequestError
from tests.batch_api.conftest import identifiers
from tests.support.batch_api_server import RunningBatchServer

PROVIDERS = ["openai", "anthropic"]
HUGE = "x" * 1000


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_request_too_large_for_any_batch_fails_alone_and_every_other_prompt_gets_its_chat(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.refuse_larger = 500
    generator = jib.get_generator(identifiers(batch_server)[provider])
    words = [f"w{i}" for i in range(9)]
    prompts = [*words[:4], HUGE, *words[4:]]
    # Too large for a batch of 800 bytes, the long prompt goes alone "for the provider to refuse".
    chats = await run_with_batch_api(
        [generator.chat(p) for p in prompts],
        max_requests=3,
        max_bytes=800,
        poll_seconds=0.01,
        on_failed="include",
    )

    assert [chat.content for chat in chats if not chat.failed] == words
    refused = chats[4]
    assert refused.failed and isinstance(refused.error, BadRequestError)
    assert "a request in this batch is larger than 500 bytes" in str(refused.error)
    assert refused.messages[-1].content == HUGE
    assert refused.attempts == 1 and refused.extra["batch_api"]["batch_id"] is None
    assert state.refused == [1]  # refused once, alone; nothing else refused or cancelled
    assert sum(len(b.requests) for b in state.created()) == len(words)
    assert all(b.status != "cancelled" for b in state.created())
    assert all(state.seen[w] == 1 for w in words)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_batch_is_split_in_halves_until_only_the_refused_request_fails(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.refuse_larger = 500
    generator = jib.get_generator(identifiers(batch_server)[provider])
    prompts = ["a", "b", "c", "d", "e", HUGE, "g", "h"]
    chats = await run_with_batch_api(
        [generator.chat(p) for p in prompts], poll_seconds=0.01, on_failed="include"
    )

    assert [chat.failed for chat in chats] == [p == HUGE for p in prompts]
    assert [chat.content for chat in chats if not chat.failed] == [p for p in prompts if p != HUGE]
    assert "larger than 500 bytes" in str(chats[5].error)
    # 8 refused, then its halves: a-d made; e-h refused, e-f refused, e made, f refused alone;
    # g-h made.
    assert state.refused == [8, 4, 2, 1]
    assert [len(b.requests) for b in state.created()] == [4, 1, 2]
    assert all(state.seen[p] == 1 for p in prompts if p != HUGE)
    assert {chat.attempts for chat in chats} == {1}


async def test_past_its_splits_a_job_fails_a_refused_batchs_requests_together(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.refuse_larger = 500
    generator = jib.get_generator(identifiers(batch_server)["anthropic"])
    prompts = [f"{i} {HUGE}" for i in range(4 * MAX_SPLITS)]  # every request is refused
    chats = await run_with_batch_api(
        [generator.chat(p) for p in prompts], poll_seconds=0.01, on_failed="include"
    )

    assert all(chat.failed for chat in chats)
    assert state.created() == []
    # Each split is one refused submission that makes two; past the bound a part is tried once.
    assert len(state.refused) == 2 * MAX_SPLITS + 1
    together = [c for c in chats if "refused batches were split" in str(c.error)]
    assert 0 < len(together) < len(chats)  # the first parts were split down to single requests
    assert re.search(
        r"HTTP 400: the provider refused a batch of \d+ requests holding this one, and this "
        rf"generator's refused batches were split {MAX_SPLITS} times already in this run: a "
        "request in this batch is larger than 500 bytes",
        str(together[-1].error),
    )
    alone = [c for c in chats if c not in together]
    assert all("HTTP 400: a request in this batch is larger" in str(c.error) for c in alone)


async def test_a_wrong_url_still_stops_the_run_instead_of_splitting(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(
        f"openai!gpt-4o-mini,api_base={batch_server.url}/nowhere,api_key=sk-test"
    )
    with pytest.raises(BadRequestError, match="HTTP 404"):
        await run_with_batch_api([generator.chat(w) for w in "abcd"], poll_seconds=0.01)
    assert batch_server.state.refused == []
