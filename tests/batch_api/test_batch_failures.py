"""The batch API path when things go wrong: result files that cannot all be read, results
duplicated or unknown, a consumer that fails mid-download, submissions, polls and downloads
answered with a rate limit or a server error. Against the server on 127.0.0.1 speaking both
batch APIs."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

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
from jib.errors import ProviderTimeoutError
from jib.messages import GeneratedMessage, Message
from tests.batch_api.conftest import identifiers
from tests.support.batch_api_server import Batch, RunningBatchServer

PROVIDERS = ["openai", "anthropic"]


def _content(line: bytes) -> str:
    """The answer a results line holds (the server answers each prompt with itself)."""
    data = json.loads(line)
    if "response" in data:
        return str(data["response"]["body"]["choices"][0]["message"]["content"])
    return str(data["result"]["message"]["content"][0]["text"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_results_line_that_cannot_be_read_costs_only_its_own_request_a_retry(
    batch_server: RunningBatchServer, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = batch_server.state
    state.shuffle = False
    cut: list[str] = []

    def mangle(batch: Batch, data: bytes) -> bytes:
        if batch.number != 1:
            return data
        lines = data.splitlines(keepends=True)
        cut.append(_content(lines[-1]))
        noise = [b"<html>502 Bad Gateway</html>\n", b'{"no": "custom_id"}\n']
        # An unknown custom id and a duplicate are ignored; the last line is cut mid-way.
        unknown = json.loads(lines[0])
        unknown["custom_id"] = "not-one-of-ours"
        extra = [json.dumps(unknown).encode() + b"\n", lines[1]]
        return b"".join([*noise, *lines[:-1], *extra, lines[-1][: len(lines[-1]) // 2]])

    state.mangle = mangle
    generator = jib.get_generator(identifiers(batch_server)[provider])
    words = [f"word {i}" for i in range(8)]
    with caplog.at_level(logging.WARNING, logger="jib.batch_api"):
        chats = await run_with_batch_api([generator.chat(w) for w in words], poll_seconds=0.01)

    assert [chat.content for chat in chats] == words
    _, retry = state.created()
    assert [body["messages"][-1]["content"] for _, body in retry.requests] in (
        [cut[0]],
        [[{"type": "text", "text": cut[0]}]],
    )
    assert {chat.content: chat.attempts for chat in chats}[cut[0]] == 2
    assert all(state.seen[w] == 1 for w in words if w != cut[0])
    skipped = [r.getMessage() for r in caplog.records if "was skipped" in r.getMessage()]
    assert len(skipped) == 3  # the page, the line without an id, the cut line
    assert not any("word" in message for message in skipped)  # the line is not logged


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_reader_failing_mid_download_closes_the_download_on_its_own_task(
    batch_server: RunningBatchServer, provider: str
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    generator = jib.get_generator(identifiers(batch_server)[provider])
    requests = [Request(f"id{i}", [Message("user", f"w{i}")], generator.params) for i in range(6)]
    taken: list[str] = []

    async def on_result(
        request: Request, result: GeneratedMessage | BaseException, delivery: Delivery
    ) -> None:
        taken.append(request.custom_id)
        if len(taken) == 2:
            raise RuntimeError("the store is full")

    job = BatchAPIJob(
        generator,
        batch_api_client(generator),
        requests,
        generator_id="g",
        run=None,
        journal=MemoryJournal(),
        on_result=on_result,
        settings=BatchAPISettings(poll_seconds=0.01),
    )
    try:
        with pytest.raises(RuntimeError, match="the store is full"):
            await job.run()
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(None)
    assert reported == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_request_whose_result_line_is_never_readable_fails_saying_so_after_its_attempts(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state

    def mangle(batch: Batch, data: bytes) -> bytes:
        # "b"'s line is cut mid-way in every batch; the others are left whole.
        lines = data.splitlines(keepends=True)
        return b"".join(x if _content(x) != "b" else x[: len(x) // 2] + b"\n" for x in lines)

    state.mangle = mangle
    generator = jib.get_generator(identifiers(batch_server)[provider])
    chats = await run_with_batch_api(
        [generator.chat(w) for w in "abc"], poll_seconds=0.01, max_attempts=2, on_failed="include"
    )

    assert [chat.content for chat in chats if not chat.failed] == ["a", "c"]
    assert isinstance(chats[1].error, ProviderTimeoutError)
    assert str(chats[1].error).endswith(
        "ended (ended) with no result for this request (not run, or its result line could not "
        "be read)"
        if provider == "anthropic"
        else "ended (completed) with no result for this request (not run, or its result line "
        "could not be read)"
    )
    first, retry = state.created()
    assert [custom_id for custom_id, _ in retry.requests] == [first.requests[1][0]]
    assert state.seen == {"a": 1, "b": 2, "c": 1}


FAULTS = {
    "openai": {
        "POST /v1/files": [500],
        "POST /v1/batches": [429, 502],
        "GET /v1/batches/": [500, 503],
        "GET /v1/files/": [500],
    },
    "anthropic": {
        "POST /v1/messages/batches": [429, 500],
        # Before the polls' prefix, which matches the results too.
        "GET /v1/messages/batches/msgbatch_0001/results": [500],
        "GET /v1/messages/batches/": [500, 503],
    },
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rate_limit_or_server_error_on_submitting_polling_or_downloading_is_tried_again(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.faults = {prefix: list(statuses) for prefix, statuses in FAULTS[provider].items()}
    generator = jib.get_generator(identifiers(batch_server)[provider])
    words = [f"w{i}" for i in range(5)]
    chats = await run_with_batch_api([generator.chat(w) for w in words], poll_seconds=0.01)

    assert [chat.content for chat in chats] == words
    assert [chat.attempts for chat in chats] == [1] * 5  # a batch's retries are not the chat's
    assert state.faults == {prefix: [] for prefix in FAULTS[provider]}  # each fault was answered
    assert len(state.created()) == 1  # nothing submitted twice
    assert all(state.seen[w] == 1 for w in words)
    if provider == "openai":  # the input file was uploaded once, however often creating failed
        assert [f for f in state.files if not f.startswith("file-batch_")] == ["file-1"]
