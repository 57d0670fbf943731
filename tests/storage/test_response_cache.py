"""jib's response cache from Python: what it keeps, what it serves, and what makes it miss.

Each test talks to a real OpenAI-protocol server on 127.0.0.1 that numbers its answers
(`tests.support.counting_server`), through `openai!`, with the cache in SQLite and in
PostgreSQL (`store_url`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
import pytest
from sqlalchemy import create_engine, text

import jib
from jib.content import ContentImageUrl, ContentText
from jib.errors import InvalidGeneratorError
from jib.messages import Message
from jib.storage import ResponseCache, StoreError, open_response_cache, open_store
from jib.storage._response_cache import WRITE_WITHIN, response_cache_run_stats
from jib.storage._response_cache_tables import NewEntry
from jib.testing import CallbackGenerator
from jib.tools import FunctionCall, ToolCall
from tests.support.counting_server import chat_posts, counting_server, identifier
from tests.support.response_cache_faults import execute, refuse_cache_writes
from tests.support.scripted_server import ScriptedServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with counting_server() as running:
        yield running


@pytest.fixture
def cache(store_url: str) -> Iterator[ResponseCache]:
    with open_response_cache(store_url) as opened:
        yield opened


def chat_many(generator: jib.Generator, prompts: list[Any], **kwargs: Any) -> list[jib.Chat]:
    return asyncio.run(generator.chat().run_batch(prompts, **kwargs))


def hit(chat: jib.Chat) -> dict[str, Any] | None:
    note: dict[str, Any] | None = chat.extra.get("response_cache")
    return note


def rows(url: str, query: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)))
    finally:
        engine.dispose()


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jib.storage.response_cache"]


def test_a_second_run_is_answered_from_the_cache_without_a_request(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    prompts = [f"prompt {n}" for n in range(20)]
    first = chat_many(generator, prompts)
    sent = len(chat_posts(server))
    second = chat_many(generator, prompts)

    assert sent == 20
    assert len(chat_posts(server)) == 20  # nothing sent again
    assert [c.content for c in second] == [c.content for c in first]
    assert all(hit(c) is None for c in first)
    for before, after in zip(first, second, strict=True):
        note = hit(after)
        assert note is not None and note["hit"] is True
        assert note["chat_id"] == before.id  # the chat the answer was first made for
        assert after.attempts == 0
        assert after.usage == before.usage
        assert after.id != before.id


def test_a_miss_sends_the_body_an_uncached_request_sends(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    plain = jib.get_generator(identifier(server))
    prompts = ["one", [Message("system", "be brief"), Message("user", "two")], "three"]
    asyncio.run(plain.chat().with_(temperature=0.5).run_batch(prompts))
    cached = plain.with_response_cache(cache).chat().with_(temperature=0.5)
    asyncio.run(cached.run_batch(prompts))  # misses: sent as written for their keys
    posts = [request.body for request in server.requests if request.method == "POST"]
    assert len(posts) == 6 and sorted(posts[3:]) == sorted(posts[:3])


def test_what_decides_the_answer_makes_a_miss(server: ScriptedServer, cache: ResponseCache) -> None:
    with counting_server() as other:
        base = jib.get_generator(identifier(server)).with_response_cache(cache)
        chat_many(base, ["same"])
        variants = [
            base.chat().with_(temperature=0.5),  # a wire param
            base.chat().with_(extra={"num_ctx": 8192}),  # a provider option in `extra`
            base.chat().with_(max_tokens=7),
            jib.get_generator(identifier(server, model="other")).with_response_cache(cache).chat(),
            jib.get_generator(identifier(other)).with_response_cache(cache).chat(),  # endpoint
        ]
        for pipeline in variants:
            asyncio.run(pipeline.run_batch(["same"]))
        parts = Message("user", [ContentText("same"), ContentImageUrl.from_bytes(PNG, "image/png")])
        chat_many(base, [[parts]])  # a message part
        chat_many(base, [[Message("system", "be brief"), Message("user", "same")]])
        chat_many(base, ["same"], samples=[1])  # the sample index
        assert len(chat_posts(server)) + len(chat_posts(other)) == 1 + 5 + 3

        chat_many(base, ["same"])  # and the first request still hits
        assert len(chat_posts(server)) + len(chat_posts(other)) == 9


def test_the_key_leaves_the_api_key_out(server: ScriptedServer, cache: ResponseCache) -> None:
    with_key = identifier(server) + ",api_key=sk-secret-one-1234"
    chat_many(jib.get_generator(with_key).with_response_cache(cache), ["hello"])
    other_key = identifier(server) + ",api_key=sk-secret-two-5678"
    (again,) = chat_many(jib.get_generator(other_key).with_response_cache(cache), ["hello"])
    cache.flush()

    assert hit(again) is not None  # a key rotation keeps the cache
    assert len(chat_posts(server)) == 1
    kept = rows(_url(cache), "SELECT key, generator, answer FROM jib_response_cache")
    assert kept and all("sk-secret" not in " ".join(map(str, row)) for row in kept)


def test_failed_answers_and_cut_answers_are_never_kept(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    pipeline = generator.chat().catch(Exception)
    for _ in range(2):
        failed = asyncio.run(pipeline.run_batch(["error:no", "cut:half"], on_failed="include"))
        assert all(chat.failed for chat in failed)
    assert len(chat_posts(server)) == 4  # asked again: nothing was served from the cache
    assert rows(_url(cache), "SELECT count(*) FROM jib_response_cache")[0][0] == 0


def test_a_cut_stream_is_never_kept_and_a_whole_one_is(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)

    async def stream(prompt: str) -> tuple[list[str], jib.Chat]:
        chat_stream = generator.chat(prompt).catch(Exception).stream(on_failed="include")
        deltas = [delta async for delta in chat_stream]
        return deltas, chat_stream.chat

    _, cut = asyncio.run(stream("cut:story"))
    assert cut.failed
    _, cut_again = asyncio.run(stream("cut:story"))
    assert cut_again.failed and hit(cut_again) is None

    deltas, whole = asyncio.run(stream("a story"))
    assert "".join(deltas) == whole.content and hit(whole) is None
    deltas, kept = asyncio.run(stream("a story"))
    assert deltas == [whole.content]  # one delta: the whole answer
    assert kept.content == whole.content and hit(kept)["chat_id"] == whole.id  # type: ignore[index]
    assert len(chat_posts(server)) == 3
    # A streamed answer serves a plain request too, and the other way round.
    (plain,) = chat_many(generator, ["a story"])
    assert plain.content == whole.content and len(chat_posts(server)) == 3


def test_samples_keep_an_answer_each(server: ScriptedServer, cache: ResponseCache) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    first = asyncio.run(generator.chat("tell me").run_many(3))
    again = asyncio.run(generator.chat("tell me").run_many(3))

    assert len({chat.content for chat in first}) == 3
    assert [c.content for c in again] == [c.content for c in first]
    assert all(hit(chat) is not None for chat in again)
    assert len(chat_posts(server)) == 3


def test_a_pipeline_cache_overrides_none_on_the_generator(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    pipeline = jib.get_generator(identifier(server)).chat().with_response_cache(cache)
    asyncio.run(pipeline.run_batch(["one", "two"]))
    (second,) = asyncio.run(pipeline.run_batch(["one"]))
    assert hit(second) is not None and len(chat_posts(server)) == 2
    # Without the cache, the same request is sent.
    asyncio.run(jib.get_generator(identifier(server)).chat().run_batch(["one"]))
    assert len(chat_posts(server)) == 3


def test_text_completions_are_kept_too(server: ScriptedServer, cache: ResponseCache) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    first = asyncio.run(generator.complete("Once upon").run())
    second = asyncio.run(generator.complete("Once upon").run())
    assert second.generated == first.generated
    assert second.extra["response_cache"]["chat_id"] == first.id
    assert len(chat_posts(server)) == 1


def test_an_expired_answer_is_asked_again(server: ScriptedServer, store_url: str) -> None:
    with open_response_cache(store_url) as cache:
        chat_many(jib.get_generator(identifier(server)).with_response_cache(cache), ["hi"])
    time.sleep(0.05)
    with open_response_cache(store_url, ttl=0.01) as short:
        (fresh,) = chat_many(
            jib.get_generator(identifier(server)).with_response_cache(short), ["hi"]
        )
    with open_response_cache(store_url, ttl=3600) as long:
        (kept,) = chat_many(jib.get_generator(identifier(server)).with_response_cache(long), ["hi"])

    assert hit(fresh) is None and fresh.content == "hi #2"
    # The expired answer was replaced: the fresh one is served from then on, not asked for again.
    assert hit(kept) is not None and kept.content == "hi #2"
    assert hit(kept)["chat_id"] == fresh.id
    assert len(chat_posts(server)) == 2


def test_an_expired_answer_is_asked_for_once_not_on_every_run(
    server: ScriptedServer, store_url: str
) -> None:
    with open_response_cache(store_url) as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        (first,) = chat_many(generator, ["hi"])
    # Kept two hours ago (as far as the cache can tell), so expired for a one-hour ttl.
    execute(store_url, "UPDATE jib_response_cache SET created_at = created_at - 7200")
    runs = []
    for _ in range(3):
        with open_response_cache(store_url, ttl=3600) as hourly:
            generator = jib.get_generator(identifier(server)).with_response_cache(hourly)
            runs.extend(chat_many(generator, ["hi"]))

    assert len(chat_posts(server)) == 2  # the first run, and the expired answer asked for once
    fresh, *later = runs
    assert hit(first) is None and hit(fresh) is None and fresh.content == "hi #2"
    assert [chat.content for chat in later] == ["hi #2", "hi #2"]
    assert all(hit(chat)["chat_id"] == fresh.id for chat in later)  # type: ignore[index]
    assert len(rows(store_url, "SELECT key FROM jib_response_cache")) == 1


def test_concurrent_batches_asking_the_same_missing_key_make_one_request(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    prompts = [f"q{n}" for n in range(10)]

    async def both() -> list[list[jib.Chat]]:
        pipeline = generator.chat()
        return await asyncio.gather(
            pipeline.run_batch(prompts), pipeline.run_batch(prompts), pipeline.run_batch(prompts)
        )

    first, second, third = asyncio.run(both())
    assert len(chat_posts(server)) == 10
    assert [c.content for c in first] == [c.content for c in second] == [c.content for c in third]
    # Within one batch too: the same prompt twice is one request.
    chat_many(generator, ["twice", "twice"])
    assert len(chat_posts(server)) == 11

    # When the one request fails, each waiting item sends its own (and fails on its own).
    failing = generator.chat().catch(Exception)

    async def failing_twice() -> list[list[jib.Chat]]:
        return await asyncio.gather(
            failing.run_batch(["error:no"], on_failed="include"),
            failing.run_batch(["error:no"], on_failed="include"),
        )

    (one,), (two,) = asyncio.run(failing_twice())
    assert one.failed and two.failed and one.error is not two.error
    assert len(chat_posts(server)) == 13


def test_the_cache_never_holds_two_answers_for_one_key_and_sample(
    server: ScriptedServer, store_url: str
) -> None:
    # Two caches (as two processes would have) each ask for the same missing answers.
    with (
        open_response_cache(store_url, write_every=100) as one,
        open_response_cache(store_url, write_every=100) as two,
    ):
        first = chat_many(
            jib.get_generator(identifier(server)).with_response_cache(one), ["x", "y"]
        )
        second = chat_many(
            jib.get_generator(identifier(server)).with_response_cache(two), ["x", "y"]
        )
        assert all(hit(c) is None for c in first + second)  # neither had written yet
        one.flush()
        two.flush()
        kept = rows(_url(one), "SELECT answer FROM jib_response_cache ORDER BY key")
    assert len(kept) == 2  # the first written stays
    with open_response_cache(store_url) as reader:
        again = chat_many(jib.get_generator(identifier(server)).with_response_cache(reader), ["x"])
    assert again[0].content == first[0].content


def test_a_generator_whose_answers_cannot_be_cached_says_so(cache: ResponseCache) -> None:
    with pytest.raises(InvalidGeneratorError, match="never cached"):
        jib.get_generator("fail!x").with_response_cache(cache)
    with pytest.raises(InvalidGeneratorError, match="never cached"):
        jib.get_generator("always_fail!x").chat().with_response_cache(cache)


def test_counts_and_clearing(server: ScriptedServer, store_url: str) -> None:
    with open_response_cache(store_url, run="counted") as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        chat_many(generator, ["a", "b"])
        chat_many(generator, ["a", "c"])
    with open_response_cache(store_url) as cache:
        (summary,) = cache.summary()
        assert (summary["entries"], summary["hits"], summary["misses"]) == (3, 1, 3)
        assert response_cache_run_stats(store_url)["counted"].hits == 1
        assert cache.clear(older_than=3600) == 0
        assert cache.clear(generator="openai!nothing") == 0
        assert cache.clear(run="counted") == 3
        assert cache.summary()[0]["entries"] == 0


def test_a_cache_beside_the_chats_leaves_the_store_readable(
    server: ScriptedServer, store_url: str
) -> None:
    with open_store(store_url) as store, open_response_cache(store_url) as cache:
        pipeline = (jib.get_generator(identifier(server)).chat().with_response_cache(cache)).watch(
            store.watch(run="both")
        )
        asyncio.run(pipeline.run_batch(["a"]))
        asyncio.run(pipeline.run_batch(["a"]))
        chats = store.query(run="both")
    assert len(chats) == 2
    assert sum(1 for chat in chats if chat.extra.get("response_cache")) == 1


def _url(cache: ResponseCache) -> str:
    return cache._engine.url.render_as_string(hide_password=False)


def test_http_error_bodies_are_never_kept_and_answers_are(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    from jib.generator.http import HTTPGenerator

    generator = HTTPGenerator.for_json_endpoint(
        url=f"{server.url}/v1/chat/completions",
        request_body={"model": "{{ model }}", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content", "error_path": "$.error.message"},
        api_key="sk-http-secret-1234",
        auth={"header": "Authorization", "format": "Bearer {api_key}"},
        max_retries=0,
    ).with_response_cache(cache)
    pipeline = generator.chat().catch(Exception)
    for _ in range(2):
        failed, good = asyncio.run(
            pipeline.run_batch(["error:denied", "hello"], on_failed="include")
        )
        assert failed.failed and not good.failed
    assert hit(good) is not None and good.content == "hello #1"
    assert len(chat_posts(server)) == 3  # the error twice, the answer once
    cache.flush()
    kept = rows(_url(cache), "SELECT answer FROM jib_response_cache")
    assert len(kept) == 1 and "denied" not in kept[0][0] and "sk-http" not in kept[0][0]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_a_ttl_must_be_a_positive_number_of_seconds(store_url: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        open_response_cache(store_url, ttl=ttl)


def test_a_sqlite_write_that_would_wait_for_a_lock_waits_off_the_event_loop(
    server: ScriptedServer, tmp_path: Any
) -> None:
    path = tmp_path / "cache.db"
    with open_response_cache(str(path), write_every=1000) as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        other_writer = sqlite3.connect(path, isolation_level=None)  # as another process's

        async def scenario() -> int:
            await generator.chat().run_batch(["a", "b"])  # kept, not written yet
            other_writer.execute("BEGIN IMMEDIATE")
            flush = asyncio.create_task(cache.aflush())
            for _ in range(20):  # the event loop goes on while the write waits for the lock
                await asyncio.sleep(0.01)
            assert not flush.done()
            assert await cache.alookup([("0" * 32, 0)]) == {}  # and reads need no lock
            other_writer.execute("COMMIT")
            return await flush

        try:
            assert asyncio.run(scenario()) == 2
        finally:
            other_writer.close()
    assert len(rows(f"sqlite:///{path}", "SELECT key FROM jib_response_cache")) == 2
    with open_response_cache(str(path)) as reader:
        again = chat_many(jib.get_generator(identifier(server)).with_response_cache(reader), ["a"])
    assert hit(again[0]) is not None and len(chat_posts(server)) == 2


def test_many_answers_are_written_and_found_in_chunks(cache: ResponseCache) -> None:
    # More than one insert statement, write slice and lookup query each.
    entries = [
        NewEntry(f"{n:032x}", n % 3, "gen", "chat", orjson.dumps({"text": str(n)}))
        for n in range(650)
    ]
    cache.keep_all(entries)
    assert asyncio.run(cache.aflush()) == 650
    wanted = [(entry.key, entry.sample) for entry in entries]
    wanted += [(entries[0].key, 1), ("f" * 32, 0)]  # another sample of a kept key, a missing key
    found = asyncio.run(cache.alookup(wanted))
    assert len(found) == 650 and found[(entries[7].key, 1)].answer == {"text": "7"}
    assert set(cache.lookup(wanted[:3] + wanted[-2:])) == set(wanted[:3])
    cache.keep_all(entries[:5])  # already kept: left as they are
    assert cache.flush() == 5
    assert len(rows(_url(cache), "SELECT key FROM jib_response_cache")) == 650


class _KeptCallback(CallbackGenerator):
    """A callback generator whose answers the cache may keep (the test's callback decides
    them from the request alone)."""

    response_cacheable: ClassVar[bool] = True


def test_an_answer_of_a_later_round_names_its_own_chat(cache: ResponseCache) -> None:
    # A tool loop sends its second round with only the chats still running: each answer kept
    # there still names the chat it was made for, not the chat at its place in the first round.
    def answer(messages: list[Message], params: Any) -> str | Message:
        if messages[-1].role == "tool":
            return f"done {messages[0].content}"
        if messages[0].content == "B":
            return Message(
                "assistant", "", tool_calls=[ToolCall("call-1", FunctionCall("weather", "{}"))]
            )
        return f"plain {messages[0].content}"

    def weather() -> str:
        """Today's weather."""
        return "sunny"

    pipeline = _KeptCallback(model="m", callback=answer).chat().using(weather)
    pipeline = pipeline.with_response_cache(cache)
    first = asyncio.run(pipeline.run_batch(["A", "B"]))
    asyncio.run(cache.aflush())
    second = asyncio.run(pipeline.run_batch(["A", "B"]))

    notes = [hit(chat) for chat in second]
    assert [note["chat_id"] if note else None for note in notes] == [chat.id for chat in first]
    assert second[1].content == "done B"


def test_a_batch_that_waits_after_the_request_it_waits_for_has_failed_sends_its_own(
    cache: ResponseCache,
) -> None:
    # Batch one's "fail" fails (and batch one ends) while batch two, which found it in flight,
    # is still sending its own "slow": when two then waits, it learns the request failed at
    # once and sends "fail" itself (rather than waiting for an answer that never comes).
    gate = asyncio.Event()
    asked: list[str] = []

    async def answer(messages: list[Message], params: Any) -> str:
        prompt = str(messages[0].content)
        asked.append(prompt)
        if prompt == "slow":
            await gate.wait()
            return "slow, done"
        for _ in range(3):  # batch two starts and finds this request in flight
            await asyncio.sleep(0)
        gate.set()
        raise ValueError("no")

    pipeline = _KeptCallback(model="m", callback=answer).chat().catch(Exception)
    pipeline = pipeline.with_response_cache(cache)

    async def both() -> list[list[jib.Chat]]:
        return await asyncio.gather(
            pipeline.run_batch(["fail"], on_failed="include"),
            pipeline.run_batch(["slow", "fail"], on_failed="include"),
        )

    (one,), (slow, two) = asyncio.run(both())
    assert one.failed and two.failed and one.error is not two.error
    assert slow.content == "slow, done"
    assert sorted(asked) == ["fail", "fail", "slow"]


def test_an_answer_not_written_yet_answers_the_same_request_again(
    server: ScriptedServer, store_url: str
) -> None:
    # A run keeps answers in memory and writes them many to a transaction: a prompt asked again
    # before its first answer is written is still answered from the cache, naming its chat.
    with open_response_cache(store_url, write_every=100) as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        (first,) = chat_many(generator, ["again"])
        (second,) = chat_many(generator, ["again"])
        assert rows(_url(cache), "SELECT key FROM jib_response_cache") == []  # not written yet
        assert len(chat_posts(server)) == 1
        note = hit(second)
        assert note is not None and note["chat_id"] == first.id
        assert second.content == first.content

        async def stream() -> tuple[list[str], jib.Chat]:
            chat_stream = generator.chat("again").stream()
            return [delta async for delta in chat_stream], chat_stream.chat

        deltas, streamed = asyncio.run(stream())
        assert deltas == [first.content] and hit(streamed) is not None
        assert len(chat_posts(server)) == 1
    assert len(rows(store_url, "SELECT key FROM jib_response_cache")) == 1  # written on close


def test_answers_being_written_are_still_found(cache: ResponseCache) -> None:
    # A big flush writes a slice at a time, letting the event loop run between slices: a
    # lookup meanwhile finds the answers of the slices still to be written.
    entries = [
        NewEntry(f"{n:032x}", 0, "gen", "chat", orjson.dumps({"text": str(n)})) for n in range(5000)
    ]
    cache.keep_all(entries)
    last = (entries[-1].key, 0)

    async def look_up_while_flushing() -> tuple[int, dict[tuple[str, int], Any]]:
        flush = asyncio.create_task(cache.aflush())
        await asyncio.sleep(0)  # the flush starts, and yields after its first slice
        found = await cache.alookup([last])
        return await flush, found

    written, found = asyncio.run(look_up_while_flushing())
    assert written == 5000 and found[last].answer == {"text": "4999"}
    assert cache.lookup([last])[last].answer == {"text": "4999"}  # and once written


DAMAGES = {
    "not JSON": "garbage",
    "JSON but not an object": '["secret answer"]',
    "an object missing fields": '{"stop_reason": "stop", "extra": {"said": "secret answer"}}',
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
@pytest.mark.parametrize("how", ["run_batch", "stream"])
def test_a_kept_answer_that_cannot_be_read_is_a_miss_and_is_replaced(
    server: ScriptedServer,
    store_url: str,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    how: str,
) -> None:
    async def ask(cache: ResponseCache) -> jib.Chat:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        if how == "run_batch":
            (chat,) = await generator.chat().run_batch(["secret prompt"])
            return chat
        return await generator.chat("secret prompt").stream()

    with open_response_cache(store_url) as cache:
        first = asyncio.run(ask(cache))
    execute(store_url, "UPDATE jib_response_cache SET answer = :damage", damage=damage)
    with (
        caplog.at_level(logging.WARNING, logger="jib.storage.response_cache"),
        open_response_cache(store_url) as cache,
    ):
        again = asyncio.run(ask(cache))
    warnings = cache_warnings(caplog)
    with open_response_cache(store_url) as cache:
        later = asyncio.run(ask(cache))

    assert hit(first) is None and hit(again) is None  # asked for again: a miss
    assert not again.failed and again.content == "secret prompt #2"
    (warning,) = warnings
    assert "unreadable answer" in warning and "replaced" in warning
    assert "secret" not in warning  # neither the prompt nor what the answer held
    # The damaged row was replaced by the new answer, which every later run is served.
    note = hit(later)
    assert note is not None and note["chat_id"] == again.id
    assert later.content == "secret prompt #2"
    assert len(chat_posts(server)) == 2
    assert len(rows(store_url, "SELECT key FROM jib_response_cache")) == 1


def test_a_damaged_row_is_replaced_even_when_other_answers_are_written_first(
    store_url: str,
) -> None:
    # Batch one finds the damaged row and sends its request; batch two's answer is kept and
    # written meanwhile. Batch one's answer, written after, still replaces the damaged row.
    hold = threading.Event()
    hold.set()
    with counting_server(hold) as server, open_response_cache(store_url) as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        chat_many(generator, ["hold:slow"])
        execute(store_url, "UPDATE jib_response_cache SET answer = 'garbage'")
        hold.clear()

        async def both() -> jib.Chat:
            slow = asyncio.create_task(generator.chat().run_batch(["hold:slow"]))
            await generator.chat().run_batch(["quick"])  # answered, kept and written
            hold.set()
            (chat,) = await slow
            return chat

        again = asyncio.run(both())
        assert len(rows(store_url, "SELECT key FROM jib_response_cache")) == 2
        with open_response_cache(store_url) as reader:
            (later,) = chat_many(
                jib.get_generator(identifier(server)).with_response_cache(reader), ["hold:slow"]
            )
        assert hit(again) is None and not again.failed
        note = hit(later)
        assert note is not None and note["chat_id"] == again.id
        assert len(chat_posts(server)) == 3


def test_an_answer_a_content_filter_stopped_is_not_kept(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)

    async def stream() -> jib.Chat:
        return await generator.chat("filter:streamed").stream()

    for _ in range(2):
        (filtered,) = chat_many(generator, ["filter:story"])
        streamed = asyncio.run(stream())
        assert filtered.stop_reason == streamed.stop_reason == "content_filter"
        assert hit(filtered) is None and hit(streamed) is None
    assert len(chat_posts(server)) == 4  # each asked both times
    assert rows(_url(cache), "SELECT count(*) FROM jib_response_cache")[0][0] == 0


def test_a_stream_sent_counts_as_a_miss_however_it_ends(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)

    async def stream(prompt: str) -> jib.Chat:
        return await generator.chat(prompt).catch(Exception).stream(on_failed="include")

    cut, refused, whole = (asyncio.run(stream(p)) for p in ["cut:story", "error:no", "a story"])
    assert cut.failed and refused.failed and not whole.failed
    assert hit(asyncio.run(stream("a story"))) is not None

    (summary,) = cache.summary()
    assert (summary["hits"], summary["misses"]) == (1, 3)  # three sent, however they ended
    assert summary["entries"] == 1  # and only the whole answer kept


def test_a_lookup_failing_during_a_run_sets_the_cache_aside_and_fails_no_chat(
    server: ScriptedServer, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = open_response_cache(store_url, write_every=1)
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    chat_many(generator, ["a"])
    execute(store_url, "DROP TABLE jib_response_cache")  # the cache's database is gone

    async def stream() -> jib.Chat:
        chat_stream = generator.chat("c").stream()
        _ = [delta async for delta in chat_stream]
        return chat_stream.chat

    with caplog.at_level(logging.WARNING, logger="jib.storage.response_cache"):
        chats = chat_many(generator, ["a", "b"])
        streamed = asyncio.run(stream())
        chats += chat_many(generator, ["a"])

    assert not any(chat.failed for chat in [*chats, streamed])
    assert all(hit(chat) is None for chat in [*chats, streamed])
    assert len(chat_posts(server)) == 5  # every request sent, none failed for the cache
    (warning,) = cache_warnings(caplog)  # said once; then the cache is set aside
    assert "cannot read the response cache" in warning
    assert "the response cache is no longer used" in warning
    assert isinstance(cache.failure, StoreError)
    with pytest.raises(StoreError, match="cannot read the response cache"):
        cache.close()


def test_a_write_failing_during_a_run_does_not_fail_its_chats(
    server: ScriptedServer, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = open_response_cache(store_url, write_every=1)
    generator = jib.get_generator(identifier(server)).with_response_cache(cache)
    refuse_cache_writes(store_url)
    with caplog.at_level(logging.WARNING, logger="jib.storage.response_cache"):
        first = chat_many(generator, ["a", "b"])
        second = chat_many(generator, ["a", "c"])

    chats = first + second
    assert not any(chat.failed for chat in chats)
    assert [chat.content.split(" #")[0] for chat in chats] == ["a", "b", "a", "c"]
    assert all(hit(chat) is None for chat in chats) and len(chat_posts(server)) == 4
    (warning,) = cache_warnings(caplog)  # said once; then the cache is set aside
    assert "cannot write to the response cache" in warning and "the disk is full" in warning
    assert "the response cache is no longer used" in warning
    for end in (cache.flush, cache.close):
        with pytest.raises(StoreError, match=r"cannot write to the response cache .*: the disk"):
            end()
    assert rows(store_url, "SELECT count(*) FROM jib_response_cache")[0][0] == 0


def test_answers_waiting_a_second_are_written_at_the_end_of_the_next_batch(
    server: ScriptedServer, store_url: str
) -> None:
    with open_response_cache(store_url, write_every=1000) as cache:
        generator = jib.get_generator(identifier(server)).with_response_cache(cache)
        chat_many(generator, ["first"])
        assert rows(store_url, "SELECT key FROM jib_response_cache") == []  # waiting
        time.sleep(WRITE_WITHIN + 0.1)
        chat_many(generator, ["second"])
        # Written by that batch, without a flush: another connection sees both.
        assert len(rows(store_url, "SELECT key FROM jib_response_cache")) == 2


def test_clearing_by_generator_takes_its_identifier_as_written_for_a_run(
    server: ScriptedServer, cache: ResponseCache
) -> None:
    chat_many(jib.get_generator(identifier(server)).with_response_cache(cache), ["a", "b"])
    (shown,) = cache.summary()
    assert shown["generator"] == identifier(server)
    # Options in another order, with spaces, and a key the cache never names.
    given = f"openai!m, max_retries=0 ,  api_base={server.url}/v1, api_key=sk-test-key-1234"
    assert cache.clear(generator="openai!not,a valid=identifier=") == 0  # taken as given
    assert cache.clear(generator="!!!") == 0
    assert cache.clear(generator=given) == 2
    assert cache.summary()[0]["entries"] == 0
