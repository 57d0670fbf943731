"""`jib.batch_api.run_with_batch_api`: requests through OpenAI's and Anthropic's batch APIs,
against a server on 127.0.0.1 speaking both (results shuffled, items failing, a batch expiring
with partial output)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import jib
from jib.batch_api import (
    DEFAULT_LIMITS,
    BatchAPIUnsupportedError,
    BatchLimits,
    JournalEntry,
    MemoryJournal,
    run_with_batch_api,
)
from jib.batch_api._engine import next_poll_delay
from jib.errors import AuthenticationError, BadRequestError, ProcessingError
from jib.generator._batch_api import BatchState
from jib.generator.litellm._anthropic_batch_api import AnthropicBatchClient
from tests.batch_api.conftest import identifiers
from tests.support.batch_api_server import RunningBatchServer

PROVIDERS = ["openai", "anthropic"]


def _prompt_of(provider: str, body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_thousand_prompts_become_batches_within_limits_each_chat_joined_to_its_prompt(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.key = "sk-test"
    prompts = [f"prompt number {i}" for i in range(1000)]
    state.fail_once = {prompts[i] for i in (3, 77, 512)}
    state.refuse = {prompts[600]}
    state.expire = {2}  # the second batch runs half its requests, then expires
    generator = jib.get_generator(identifiers(batch_server)[provider])
    most_bytes = 15_000
    chats = await run_with_batch_api(
        [generator.chat(prompt) for prompt in prompts],
        max_requests=150,
        max_bytes=most_bytes,
        poll_seconds=0.01,
        on_failed="include",
    )

    assert len(chats) == 1000
    for prompt, chat in zip(prompts, chats, strict=True):
        assert chat.messages[-1].content == prompt
        if prompt == prompts[600]:
            assert chat.failed and isinstance(chat.error, BadRequestError)
            assert "this prompt is refused" in str(chat.error)
        else:
            assert not chat.failed, chat.error
            assert chat.content == prompt  # the server answers with the prompt itself
            assert chat.extra["batch_api"]["provider"] == provider
    batches = state.created(provider)
    for batch in batches:
        assert len(batch.requests) <= 150
        assert batch.size <= most_bytes  # the input file, or the request's body
    # Every request went out once in a first round; each later batch holds only requests that
    # failed or were not run: never a whole batch again.
    seen: set[str] = set()
    first_round, retries = [], []
    for batch in batches:
        ids = {custom_id for custom_id, _ in batch.requests}
        if ids & seen:
            assert ids <= seen
            retries.append(batch)
        else:
            first_round.append(batch)
        seen |= ids
    assert sum(len(b.requests) for b in first_round) == 1000
    assert any(len(b.requests) < 150 for b in first_round[:-1])  # cut by bytes
    expired = state.batches[first_round[1].id]
    assert expired.number in state.expire and expired.errors  # half its requests not run
    not_run = {c for c, _ in expired.requests[len(expired.requests) // 2 :]}
    failed_once = {
        c for b in first_round for c, body in b.requests
        if _prompt_of(provider, body) in state.fail_once
    }  # fmt: skip
    retried = [c for b in retries for c, _ in b.requests]
    assert sorted(retried) == sorted(not_run | failed_once)
    assert all(state.seen[p] == 1 for p in prompts if p not in state.fail_once)
    assert {chat.attempts for chat in chats if chat.messages[-1].content in state.fail_once} == {2}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fallback_sends_the_failed_requests_directly(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.fail_once = {"two"}
    state.expire = {1}
    generator = jib.get_generator(identifiers(batch_server)[provider])
    words = ["one", "two", "three", "four"]
    chats = await run_with_batch_api(
        [generator.chat(w) for w in words], poll_seconds=0.01, fallback=True
    )

    assert [chat.content for chat in chats] == words
    assert len(state.created()) == 1  # nothing submitted again
    assert state.direct == 3  # "two" failed in the batch; "three", "four" were not run
    assert [chat.extra["batch_api"]["batch_id"] is None for chat in chats] == [
        False,
        True,
        True,
        True,
    ]


async def test_a_journal_lets_a_second_call_collect_batches_without_submitting_again(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.gate.clear()  # batches stay in progress
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    pipelines = [generator.chat(f"q{i}") for i in range(10)]
    three_submitted = asyncio.Event()

    class Journal(MemoryJournal):
        def submitted(self, entry: JournalEntry) -> None:
            super().submitted(entry)
            if len(self.entries) == 3:
                three_submitted.set()

    journal = Journal()
    first = asyncio.ensure_future(
        run_with_batch_api(pipelines, journal=journal, run="r", poll_seconds=0.01, max_requests=4)
    )
    await three_submitted.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    state.gate.set()
    chats = await run_with_batch_api(pipelines, journal=journal, run="r", poll_seconds=0.01)

    assert [chat.content for chat in chats] == [f"q{i}" for i in range(10)]
    assert len(state.created()) == 3
    assert all(entry.collected for entry in journal.entries.values())


def test_a_provider_without_a_batch_api_is_refused_with_a_clear_error() -> None:
    pipelines = [jib.get_generator("echo!demo").chat("hi")]
    with pytest.raises(BatchAPIUnsupportedError, match=r"echo!demo has no batch API jib speaks"):
        asyncio.run(run_with_batch_api(pipelines))


def test_a_pipeline_with_tool_rounds_is_refused(batch_server: RunningBatchServer) -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    generator = jib.get_generator(identifiers(batch_server)["openai"])
    with pytest.raises(BatchAPIUnsupportedError, match="tools"):
        asyncio.run(run_with_batch_api([generator.chat("hi").using(add)]))
    assert batch_server.state.created() == []


async def test_a_wrong_key_fails_with_the_providers_error_and_never_shows_the_key(
    batch_server: RunningBatchServer,
) -> None:
    batch_server.state.key = "the-right-key"
    generator = jib.get_generator(identifiers(batch_server, key="sk-wrong-secret")["anthropic"])
    with pytest.raises(AuthenticationError) as caught:
        await run_with_batch_api([generator.chat("hi")], poll_seconds=0.01)
    assert "sk-wrong-secret" not in str(caught.value)
    assert "sk-wrong-secret" not in repr(caught.value.__cause__)


async def test_results_on_another_origin_are_not_fetched_with_the_key(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(identifiers(batch_server)["anthropic"])
    client = generator.batch_api_client()
    assert isinstance(client, AnthropicBatchClient)
    state = BatchState("ended", "ended", results_url="http://127.0.0.2:9/results")
    with pytest.raises(ProcessingError, match="not on the API's origin"):
        async for _ in client.results(state):
            pass
    await client.aclose()


async def test_the_anthropic_batch_carries_litellms_messages_body(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(
        identifiers(batch_server)["anthropic"] + ",temperature=0.2,max_tokens=50,stop=END"
    )
    pipeline = generator.chat([{"role": "system", "content": "Be brief."}, "hello"])
    chats = await run_with_batch_api([pipeline], poll_seconds=0.01)

    assert chats[0].content == "hello"
    (batch,) = batch_server.state.created("anthropic")
    params = batch.requests[0][1]
    assert params["model"] == "claude-sonnet-4-5"
    assert params["system"] == [{"type": "text", "text": "Be brief."}]
    assert params["temperature"] == 0.2 and params["max_tokens"] == 50
    assert params["stop_sequences"] == ["END"]
    assert chats[0].usage is not None and chats[0].usage.input_tokens == 1


async def test_the_openai_batch_line_is_the_body_openai_sends(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(identifiers(batch_server)["openai"] + ",temperature=0.5,seed=7")
    await run_with_batch_api([generator.chat("hello")], poll_seconds=0.01)

    (batch,) = batch_server.state.created("openai")
    custom_id, body = batch.requests[0]
    assert len(custom_id) == 32
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.5,
        "seed": 7,
    }
    file = batch_server.state.files["file-1"]
    assert json.loads(file)["url"] == "/v1/chat/completions"


async def test_a_batch_failed_as_a_whole_is_split_and_its_requests_run(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.refuse_batches = {1}
    generator = jib.get_generator(identifiers(batch_server)["openai"])
    chats = await run_with_batch_api(
        [generator.chat(w) for w in ("a", "b", "c")],
        max_requests=2,
        poll_seconds=0.01,
        on_failed="include",
    )

    assert [chat.content for chat in chats] == ["a", "b", "c"]
    assert [chat.attempts for chat in chats] == [1, 1, 1]  # the failed batch ran none of them
    # The failed batch's halves went on their own (submitted before or after c's batch).
    failed, *others = state.created()
    held = sorted([body["messages"][-1]["content"] for _, body in b.requests] for b in others)
    assert failed.status == "failed" and held == [["a"], ["b"], ["c"]]


async def test_on_failed_raise_raises_the_first_failure_once_every_request_has_its_result(
    batch_server: RunningBatchServer,
) -> None:
    state = batch_server.state
    state.refuse = {"b"}
    generator = jib.get_generator(identifiers(batch_server)["anthropic"])
    with pytest.raises(BadRequestError, match="this prompt is refused"):
        await run_with_batch_api([generator.chat(w) for w in "abc"], poll_seconds=0.01)
    skipped = await run_with_batch_api(
        [generator.chat(w) for w in "abc"], poll_seconds=0.01, on_failed="skip"
    )
    assert [chat.content for chat in skipped] == ["a", "c"]


def test_the_default_limits_are_the_providers_own() -> None:
    assert DEFAULT_LIMITS["openai"] == BatchLimits(50_000, 200_000_000)
    assert DEFAULT_LIMITS["anthropic"] == BatchLimits(100_000, 256_000_000)
    with pytest.raises(ValueError, match="at least 1 request"):
        BatchLimits(0, 10)


@pytest.mark.parametrize(
    ("delay", "most", "expected"),
    [(10, 300, 15), (0.01, 300, 0.015), (250, 300, 300), (300, 300, 300), (600, 300, 600)],
)
def test_polls_back_off_by_half_up_to_the_most(delay: float, most: float, expected: float) -> None:
    assert next_poll_delay(delay, most) == pytest.approx(expected)


async def test_a_request_the_provider_cannot_carry_fails_alone_before_anything_is_sent(
    batch_server: RunningBatchServer,
) -> None:
    generator = jib.get_generator(identifiers(batch_server)["anthropic"])
    clip = jib.ContentAudioInput.from_bytes(b"RIFF....WAVE", "wav")
    pipelines = [
        generator.chat("fine"),
        generator.chat([jib.Message("user", [jib.ContentText("Transcribe."), clip])]),
    ]
    chats = await run_with_batch_api(pipelines, poll_seconds=0.01, on_failed="include")

    assert chats[0].content == "fine"
    assert chats[1].failed and "audio" in str(chats[1].error).lower()
    (batch,) = batch_server.state.created()
    assert len(batch.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_results_download_cut_short_is_read_again_and_each_chat_kept_once(
    batch_server: RunningBatchServer, provider: str
) -> None:
    state = batch_server.state
    state.cut_downloads = 1
    generator = jib.get_generator(identifiers(batch_server)[provider])
    words = [f"w{i}" for i in range(200)]
    chats = await run_with_batch_api([generator.chat(w) for w in words], poll_seconds=0.01)

    assert [chat.content for chat in chats] == words
    assert state.cut_downloads == 0
    assert len(state.created()) == 1


async def test_litellms_openai_route_goes_through_openais_batch_api(
    batch_server: RunningBatchServer,
) -> None:
    batch_server.state.key = "sk-test"
    generator = jib.get_generator(
        f"openai/gpt-4o-mini,api_base={batch_server.url}/v1,api_key=sk-test"
    )
    chats = await run_with_batch_api([generator.chat("via litellm")], poll_seconds=0.01)

    assert chats[0].content == "via litellm"
    assert chats[0].generator is generator
    (batch,) = batch_server.state.created("openai")
    assert batch.requests[0][1]["model"] == "gpt-4o-mini"
