"""Submitting batches when the provider refuses one, or when its answer to creating one is lost:
a refusal fails only the requests it is about, and a batch made but not answered is adopted,
never made twice. Against the server on 127.0.0.1 speaking both batch APIs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import pytest

import jib
from jib.batch_api import (
    BatchAPIJob,
    BatchAPISettings,
    Delivery,
    MemoryJournal,
    Request,
    batch_api_client,
    run_with_batch_api,
)
from jib.batch_api._engine import MAX_SPLITS
from jib.errors import BadRequestError, ProviderConnectionError, ServerError
from jib.generator._batch_api import BatchItem
from jib.generator.openai._batch_api import OpenAIBatchClient
from jib.messages import GeneratedMessage, Message
from jib.params import GenerateParams
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


async def test_a_batch_failed_for_one_bad_request_costs_only_that_request(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.fail_holding = {"w5"}  # OpenAI accepts the batch, then fails it as a whole
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    words = [f"w{i}" for i in range(8)]
    chats = await run_with_batch_api(
        [generator.chat(w) for w in words], poll_seconds=0.01, on_failed="include"
    )

    assert [chat.failed for chat in chats] == [w == "w5" for w in words]
    assert re.search(
        r"the provider refused batch \w+: This line is not parseable", str(chats[5].error)
    )
    assert [c.content for c in chats if not c.failed] == [w for w in words if w != "w5"]
    # 8 → 4 + 4, the failed 4 → 2 + 2, the failed 2 → 1 + 1: each prompt ran once at most.
    assert sorted(len(batch.requests) for batch in state.created()) == [1, 1, 2, 2, 4, 4, 8]
    assert all(state.seen.get(w) == 1 for w in words if w != "w5")
    assert all(chat.attempts == 1 for chat in chats if not chat.failed)


async def test_past_its_splits_a_job_fails_a_failed_batchs_requests_together(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    words = [f"w{i}" for i in range(4 * MAX_SPLITS)]
    state.fail_holding = set(words)  # every batch fails as a whole
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    chats = await run_with_batch_api(
        [generator.chat(w) for w in words], poll_seconds=0.01, on_failed="include"
    )

    assert all(chat.failed for chat in chats)
    assert len(state.created()) == 2 * MAX_SPLITS + 1  # each split makes two batches
    # Past the bound a failed part fails whole, saying why; a part split down to one request
    # fails with the provider's message alone (how many do depends on which polls come first).
    together = [c for c in chats if "failed batches were split" in str(c.error)]
    assert together
    assert f"failed batches were split {MAX_SPLITS} times already in this run" in str(
        together[-1].error
    )
    assert all("This line is not parseable" in str(c.error) for c in chats)
    assert state.seen == {}  # no request of a failed batch ran


async def test_a_wrong_url_still_stops_the_run_instead_of_splitting(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(
        f"openai!gpt-4o-mini,api_base={batch_server.url}/nowhere,api_key=sk-test"
    )
    with pytest.raises(BadRequestError, match="HTTP 404"):
        await run_with_batch_api([generator.chat(w) for w in "abcd"], poll_seconds=0.01)
    assert batch_server.state.refused == []


@pytest.mark.parametrize("lost", [0, 500], ids=["connection-closed", "server-error"])
async def test_a_batch_made_whose_answer_was_lost_is_adopted_and_journaled_as_if_created(
    batch_server: RunningBatchServer, lost: int
) -> None:
    state = batch_server.state
    state.lose_answers = {"POST /v1/batches": [lost]}
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    journal = MemoryJournal()
    words = [f"w{i}" for i in range(6)]
    chats = await run_with_batch_api(
        [generator.chat(w) for w in words], journal=journal, run="r", poll_seconds=0.01
    )

    assert [chat.content for chat in chats] == words
    assert state.lose_answers == {"POST /v1/batches": []}  # the answer was lost
    (batch,) = state.created()  # made once, by the creation whose answer was lost
    assert all(state.seen[w] == 1 for w in words)
    assert {chat.extra["batch_api"]["batch_id"] for chat in chats} == {batch.id}
    assert [f for f in state.files if not f.startswith("file-batch_")] == ["file-1"]
    (entry,) = journal.entries.values()
    assert (entry.batch_id, entry.input_file_id) == (batch.id, "file-1")
    assert sorted(entry.custom_ids) == sorted(c for c, _ in batch.requests)
    assert (entry.provider, entry.run, entry.collected) == ("openai", "r", True)
    assert entry.endpoint == f"{batch_server.url}/v1"


def _lines(client: OpenAIBatchClient, words: list[str]) -> list[bytes]:
    return [
        client.line(BatchItem(f"id-{w}", [Message("user", w)], GenerateParams())) for w in words
    ]


@contextlib.asynccontextmanager
async def _ours_and_others(
    batch_server: RunningBatchServer,
) -> AsyncIterator[tuple[OpenAIBatchClient, OpenAIBatchClient]]:
    """Our OpenAI batch client and another model's on the same server (someone else's batches)."""
    ours = jib.get_generator(identifiers(batch_server)["openai"])
    other = jib.get_generator(identifiers(batch_server)["openai"].replace("4o-mini", "4o"))
    client, others = batch_api_client(ours), batch_api_client(other)
    assert isinstance(client, OpenAIBatchClient) and isinstance(others, OpenAIBatchClient)
    try:
        yield client, others
    finally:
        await client.aclose()
        await others.aclose()


async def test_looking_for_a_batch_made_from_an_upload_pages_newest_first_past_newer_ones(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.page_size = 2
    async with _ours_and_others(batch_server) as (client, others):
        for n in range(3):  # older than our upload
            await others.submit(_lines(others, [f"old{n}"]), label="other")
        lines = _lines(client, ["a", "b"])
        state.lose_answers = {"POST /v1/batches": [0]}
        with pytest.raises(ProviderConnectionError):
            await client.submit(lines, label="ours")
        for n in range(3):  # made since, by someone else
            await others.submit(_lines(others, [f"new{n}"]), label="other")
        state.listings.clear()

        adopted = await client.submit(lines, label="ours")

    made = [b for b in state.created() if b.input_file_id == adopted.input_file_id]
    assert [b.id for b in made] == [adopted.batch_id] == ["batch_0004"]
    assert len(state.created()) == 7  # nothing created for the retried submit
    # Newest first, two a page: 7 6, 5 4 (ours): the second page is asked after the first's last.
    assert state.listings == [{"limit": "100"}, {"limit": "100", "after": "batch_0006"}]


async def test_a_creation_that_failed_before_it_was_made_looks_no_further_than_the_upload(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.page_size = 1
    async with _ours_and_others(batch_server) as (client, others):
        for n in range(5):  # older than our upload: never paged through
            await others.submit(_lines(others, [f"old{n}"]), label="other")
        lines = _lines(client, ["a"])
        state.faults = {"POST /v1/batches": [503]}  # answered before anything is made
        with pytest.raises(ServerError):
            await client.submit(lines, label="ours")
        await others.submit(_lines(others, ["new"]), label="other")
        state.listings.clear()

        created = await client.submit(lines, label="ours")

    assert created.batch_id == "batch_0007"
    assert [b.input_file_id for b in state.created()].count(created.input_file_id) == 1
    # batch_0006 (newer, someone else's), then batch_0005, older than the upload: stop there.
    assert state.listings == [{"limit": "100"}, {"limit": "100", "after": "batch_0006"}]


async def test_a_job_whose_create_answer_is_lost_hands_each_request_one_result(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.lose_answers = {"POST /v1/batches": [0, 500]}  # the first two creations
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    requests = [Request(f"id{i}", [Message("user", f"w{i}")], generator.params) for i in range(6)]
    results: list[tuple[str, str | None]] = []

    async def on_result(
        request: Request, result: GeneratedMessage | BaseException, delivery: Delivery
    ) -> None:
        assert isinstance(result, GeneratedMessage), result
        results.append((request.custom_id, delivery.batch_id))

    job = BatchAPIJob(
        generator,
        batch_api_client(generator),
        requests,
        generator_id="g",
        run=None,
        journal=MemoryJournal(),
        on_result=on_result,
        settings=BatchAPISettings(poll_seconds=0.01, max_requests=3),
    )
    await job.run()

    assert job.submitted_batches == 2
    assert [b.id for b in state.created()] == ["batch_0001", "batch_0002"]
    assert sorted(results) == [(f"id{i}", f"batch_000{1 + i // 3}") for i in range(6)]
