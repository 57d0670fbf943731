"""ChatPipeline behaviour, driven through the public testing generators."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import pytest

import jib
from jib import Chat, GenerateParams, Message
from jib.errors import RETRYABLE_ERRORS, ProviderError, RateLimitError, ServerError
from jib.testing import (
    AlwaysFailGenerator,
    CallbackGenerator,
    EchoGenerator,
    FailingGenerator,
    FixedGenerator,
)


def echo() -> EchoGenerator:
    return EchoGenerator(model="echo")


def fails_on(word: str) -> CallbackGenerator:
    """Answers 'ok: <text>' but fails any item whose last message contains `word`."""

    def answer(messages: list[Message], params: GenerateParams) -> str:
        if word in messages[-1].content:
            raise ServerError(f"cannot answer {messages[-1].content!r}", status_code=500)
        return f"ok: {messages[-1].content}"

    return CallbackGenerator(model="cb", callback=answer)


# -- running ------------------------------------------------------------------------------------


async def test_run_returns_a_chat_with_sent_and_generated_messages() -> None:
    chat = await echo().chat([{"role": "system", "content": "be kind"}, "hello"]).run()
    assert isinstance(chat, Chat)
    assert [m.role for m in chat.all] == ["system", "user", "assistant"]
    assert chat.content == "hello"
    assert chat.last == Message("assistant", "hello")
    assert chat.stop_reason == "stop"
    assert chat.usage is not None and chat.usage.input_tokens == 1
    assert chat.conversation == "[system]: be kind\n\n[user]: hello\n\n[assistant]: hello"
    assert not chat.failed and chat.error is None


async def test_awaiting_a_pipeline_runs_it() -> None:
    generator = FixedGenerator(model="f", text="same")
    awaited = await generator.chat("hi")
    ran = await generator.chat("hi").run()
    assert awaited.all == ran.all


async def test_run_batch_calls_the_generator_once_for_the_whole_batch() -> None:
    generator = echo()
    chats = await generator.chat("prefix").run_batch([f"item {i}" for i in range(25)])
    assert generator.batch_sizes == [25]
    assert [c.content for c in chats] == [f"item {i}" for i in range(25)]
    assert chats[3].messages == [Message("user", "prefix"), Message("user", "item 3")]


async def test_run_many_calls_the_generator_once() -> None:
    generator = echo()
    chats = await generator.chat("again").run_many(7)
    assert generator.batch_sizes == [7]
    assert len({c.id for c in chats}) == 7
    assert await generator.chat("x").run_many(0) == []


async def test_run_batch_takes_per_item_params() -> None:
    generator = echo()
    chats = await generator.chat().run_batch(
        ["one two three", "one two three"], [GenerateParams(max_tokens=1), None]
    )
    assert [c.content for c in chats] == ["one", "one two three"]
    assert [c.stop_reason for c in chats] == ["length", "stop"]
    with pytest.raises(ValueError, match="2 inputs but 1 params"):
        await generator.chat().run_batch(["a", "b"], [None])


async def test_run_batch_accepts_message_lists_and_dicts() -> None:
    chats = (
        await echo()
        .chat()
        .run_batch([[{"role": "system", "content": "s"}, "first"], Message("user", "second")])
    )
    assert [c.content for c in chats] == ["first", "second"]


async def test_run_over_runs_once_on_each_generator() -> None:
    a, b = FixedGenerator(model="a", text="from a"), FixedGenerator(model="b", text="from b")
    chats = await a.chat("hi").run_over(a, b, "fixed!c,text=from%20c")
    assert [c.content for c in chats] == ["from a", "from b", "from c"]
    assert chats[2].generator_id == "fixed!c,text=from%20c"


# -- params -------------------------------------------------------------------------------------


async def test_params_merge_generator_then_pipeline_then_item() -> None:
    seen: list[GenerateParams] = []

    def record(messages: list[Message], params: GenerateParams) -> str:
        seen.append(params)
        return "ok"

    generator = CallbackGenerator(
        model="cb", callback=record, params=GenerateParams(temperature=0.1, seed=1)
    )
    await (
        generator.chat("x")
        .with_(temperature=0.5, max_tokens=9)
        .run_batch(["a"], [GenerateParams(max_tokens=3)])
    )
    assert seen[0].temperature == 0.5
    assert seen[0].seed == 1
    assert seen[0].max_tokens == 3


async def test_with_returns_a_new_pipeline_and_leaves_the_original_and_generator_alone() -> None:
    generator = echo()
    base = generator.chat("one two three")
    short = base.with_(max_tokens=1)
    also_short = base.with_(GenerateParams(max_tokens=2))
    assert base.params.max_tokens is None
    assert generator.params.max_tokens is None
    assert (await short.run()).content == "one"
    assert (await also_short.run()).content == "one two"
    assert (await base.run()).content == "one two three"


async def test_wrap_on_one_pipeline_does_not_change_the_generator_or_other_pipelines() -> None:
    calls: list[str] = []

    def counting(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.append("wrapped")
            return await fn(*args, **kwargs)

        return wrapped

    generator = echo()
    plain = generator.chat("hi")
    wrapped = plain.wrap(counting)
    await plain.run()
    assert calls == []
    await wrapped.run()
    assert calls == ["wrapped"]
    await generator.chat("hi").run()
    assert calls == ["wrapped"]
    assert wrapped.generator is not generator


async def test_wrap_with_backoff_retries_a_generator_that_fails_twice() -> None:
    generator = FailingGenerator(model="flaky", fail_times=2, error="RateLimitError")
    retry = backoff.on_exception(backoff.constant, RETRYABLE_ERRORS, max_tries=3, interval=0)
    chat = await generator.chat("hello").wrap(retry).run()
    assert chat.content == "hello"
    assert generator.calls == 3


async def test_wrap_with_backoff_gives_up_after_max_tries() -> None:
    generator = FailingGenerator(model="flaky", fail_times=5, error="ServerError")
    retry = backoff.on_exception(backoff.constant, RETRYABLE_ERRORS, max_tries=2, interval=0)
    with pytest.raises(ServerError, match="injected failure 2 of 5"):
        await generator.chat("hello").wrap(retry).run()


# -- failures -----------------------------------------------------------------------------------


async def test_one_failing_item_keeps_every_good_chat_with_include() -> None:
    chats = await fails_on("bad").chat().run_batch(["a", "bad", "c"], on_failed="include")
    assert [c.failed for c in chats] == [False, True, False]
    assert [c.content for c in chats if not c.failed] == ["ok: a", "ok: c"]
    assert isinstance(chats[1].error, ServerError)
    assert chats[1].generated == []


async def test_one_failing_item_is_dropped_with_skip() -> None:
    chats = await fails_on("bad").chat().run_batch(["a", "bad", "c"], on_failed="skip")
    assert [c.content for c in chats] == ["ok: a", "ok: c"]


async def test_run_many_keeps_good_chats_when_some_fail() -> None:
    generator = FailingGenerator(model="flaky", fail_times=2)
    chats = await generator.chat("hi").run_many(5, on_failed="include")
    assert [c.failed for c in chats] == [True, True, False, False, False]


async def test_raise_policy_raises_the_failure() -> None:
    with pytest.raises(ServerError, match="cannot answer 'bad'"):
        await fails_on("bad").chat().run_batch(["a", "bad"])


async def test_run_with_include_returns_the_failed_chat() -> None:
    chat = (
        await AlwaysFailGenerator(model="x", error="RateLimitError")
        .chat("hi")
        .run(on_failed="include")
    )
    assert chat.failed
    assert isinstance(chat.error, RateLimitError)
    assert chat.error.retryable and chat.error.status_code == 429


async def test_run_rejects_skip_and_unknown_policies() -> None:
    with pytest.raises(ValueError, match="use 'include'"):
        await echo().chat("hi").run(on_failed="skip")
    with pytest.raises(ValueError, match="on_failed must be one of"):
        await echo().chat("hi").run_many(1, on_failed="ignore")  # type: ignore[arg-type]


async def test_exceptions_outside_catch_propagate_even_with_include() -> None:
    def broken(messages: list[Message], params: GenerateParams) -> str:
        raise KeyError("a bug")

    generator = CallbackGenerator(model="cb", callback=broken)
    with pytest.raises(KeyError):
        await generator.chat("hi").run(on_failed="include")
    chat = await generator.chat("hi").catch(KeyError).run(on_failed="include")
    assert chat.failed and isinstance(chat.error, KeyError)


def test_catch_rejects_non_exception_types() -> None:
    with pytest.raises(TypeError, match="catch"):
        echo().chat("hi").catch("ValueError")  # type: ignore[arg-type]


async def test_a_generator_returning_the_wrong_number_of_results_is_an_error() -> None:
    class Short(jib.Generator):
        async def generate_messages(self, messages: Any, params: Any) -> Any:
            return []

    with pytest.raises(RuntimeError, match="returned 0 results for a batch of 2"):
        await Short(model="s").chat().run_batch(["a", "b"])


async def test_a_whole_batch_failure_becomes_one_failure_per_item() -> None:
    class Down(jib.Generator):
        async def generate_messages(self, messages: Any, params: Any) -> Any:
            raise ProviderError("down", status_code=503, retryable=True)

    chats = await Down(model="d").chat().run_batch(["a", "b"], on_failed="include")
    assert [c.failed for c in chats] == [True, True]


async def test_text_completion_on_a_chat_only_generator_names_the_class() -> None:
    class ChatOnly(jib.Generator):
        async def generate_messages(self, messages: Any, params: Any) -> Any:
            return []

    with pytest.raises(NotImplementedError, match="ChatOnly does not support text completion"):
        await ChatOnly(model="c").complete("hi").run()


# -- callbacks ----------------------------------------------------------------------------------


async def test_then_callbacks_can_replace_the_chat_sync_or_async() -> None:
    def tag(chat: Chat) -> None:
        chat.metadata["tagged"] = True

    async def continue_once(chat: Chat) -> jib.ChatPipeline:
        return chat.continue_("and more")

    chat = await echo().chat("start").then(tag).then(continue_once).run()
    assert chat.content == "and more"
    assert [m.content for m in chat.all] == ["start", "start", "and more", "and more"]


async def test_then_is_not_called_for_failed_chats_and_its_failures_are_recorded() -> None:
    seen: list[str] = []

    async def check(chat: Chat) -> None:
        seen.append(chat.content)
        if chat.content == "ok: b":
            raise ServerError("validation failed")

    chats = (
        await fails_on("bad").chat().then(check).run_batch(["a", "bad", "b"], on_failed="include")
    )
    assert sorted(seen) == ["ok: a", "ok: b"]
    assert [c.failed for c in chats] == [False, True, True]


async def test_map_receives_the_successful_chats_and_returns_the_new_list() -> None:
    async def keep_long(chats: list[Chat]) -> list[Chat]:
        return [c for c in chats if len(c.content) > 1]

    chats = await echo().chat().map(keep_long).run_batch(["a", "bb", "ccc"])
    assert [c.content for c in chats] == ["bb", "ccc"]


async def test_map_must_return_a_list() -> None:
    with pytest.raises(TypeError, match="must return a list"):
        await echo().chat().map(lambda chats: None).run_batch(["a"])


async def test_watch_sees_every_finished_chat_including_failures_before_raise() -> None:
    watched: list[list[Chat]] = []
    pipeline = fails_on("bad").chat().watch(watched.append)
    with pytest.raises(ServerError):
        await pipeline.run_batch(["a", "bad"])
    await pipeline.run_batch(["c"], on_failed="skip")
    assert [[c.failed for c in batch] for batch in watched] == [[False, True], [False]]


async def test_meta_adds_metadata_to_every_chat_without_changing_the_original() -> None:
    base = echo().chat("hi").meta(run="r1")
    tagged = base.meta(tag="t")
    chat = await tagged.run()
    assert chat.metadata == {"run": "r1", "tag": "t"}
    assert (await base.run()).metadata == {"run": "r1"}


async def test_add_and_fork_return_new_pipelines() -> None:
    base = echo().chat("one")
    more = base.add("two")
    forked = base.fork()
    assert [m.content for m in base.messages] == ["one"]
    assert [m.content for m in more.messages] == ["one", "two"]
    assert forked is not base and forked.messages == base.messages


async def test_chat_restart_and_fork_carry_the_conversation() -> None:
    chat = await echo().chat("first").meta(run="x").run()
    again = await chat.restart().run()
    assert [m.content for m in again.all] == ["first", "first"]
    forked = await chat.fork("second").run()
    assert [m.content for m in forked.all] == ["first", "first", "second", "second"]
    assert forked.metadata == {"run": "x"}


# -- event loops and concurrency ----------------------------------------------------------------


def test_generator_can_be_reused_in_a_second_asyncio_run() -> None:
    async def slow(messages: list[Message], params: GenerateParams) -> str:
        await asyncio.sleep(0.001)
        return "ok"

    generator = CallbackGenerator(model="cb", callback=slow, max_connections=1)

    async def batch() -> list[Chat]:
        return await generator.chat().run_batch(["a", "b", "c"])

    assert len(asyncio.run(batch())) == 3
    assert len(asyncio.run(batch())) == 3


async def test_max_connections_bounds_items_in_flight() -> None:
    in_flight = 0
    peak = 0

    async def slow(messages: list[Message], params: GenerateParams) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return "ok"

    generator = CallbackGenerator(model="cb", callback=slow, max_connections=3)
    await generator.chat().run_batch([str(i) for i in range(12)])
    assert peak == 3


def test_request_limiter_forgets_closed_event_loops() -> None:
    from jib._concurrency import RequestLimiter

    limiter = RequestLimiter(1)

    async def use() -> None:
        await limiter.acquire()
        await asyncio.sleep(0)
        limiter.release()

    for _ in range(3):
        asyncio.run(use())
    assert len(limiter._states) == 1


# -- failure paths of callbacks, cancellation -----------------------------------------------------


async def test_a_then_raising_an_uncaught_exception_cancels_the_others_and_propagates() -> None:
    finished: list[str] = []
    watched: list[list[Chat]] = []

    async def callback(chat: Chat) -> None:
        if chat.content == "bug":
            raise KeyError("a bug in the callback")
        await asyncio.sleep(0.05)
        finished.append(chat.content)

    pipeline = echo().chat().then(callback).watch(watched.append)
    with pytest.raises(KeyError, match="a bug in the callback"):
        await pipeline.run_batch(["slow 1", "bug", "slow 2"], on_failed="include")
    await asyncio.sleep(0.1)
    assert finished == []  # nothing kept running after the run failed
    assert watched == []


async def test_later_then_callbacks_skip_a_chat_that_failed_in_an_earlier_one() -> None:
    seen: list[bool] = []

    def fail_via_pipeline(chat: Chat) -> jib.ChatPipeline:
        return AlwaysFailGenerator(model="x").chat("again")

    def record(chat: Chat) -> None:
        seen.append(chat.failed)

    chat = await echo().chat("hi").then(fail_via_pipeline).then(record).run(on_failed="include")
    assert chat.failed
    assert seen == []


async def test_a_watcher_that_raises_stops_the_run_and_later_watchers() -> None:
    later: list[list[Chat]] = []

    def broken(chats: list[Chat]) -> None:
        raise OSError("store is down")

    pipeline = echo().chat().watch(broken).watch(later.append)
    with pytest.raises(OSError, match="store is down"):
        await pipeline.run_batch(["a"], on_failed="include")
    assert later == []


async def test_a_cancelled_run_stops_its_items() -> None:
    finished: list[str] = []

    async def slow(messages: list[Message], params: GenerateParams) -> str:
        await asyncio.sleep(0.2)
        finished.append(messages[-1].content)
        return "late"

    generator = CallbackGenerator(model="cb", callback=slow)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(generator.chat().run_batch(["a", "b"]), timeout=0.02)
    await asyncio.sleep(0.3)
    assert finished == []
    assert len(await generator.chat().run_batch(["c"])) == 1  # still usable afterwards


async def test_run_over_parses_every_identifier_before_running_anything() -> None:
    generator = echo()
    with pytest.raises(jib.InvalidGeneratorError, match="unknown provider 'nope'"):
        await generator.chat("hi").run_over(generator, "nope!x", on_failed="include")
    assert generator.batch_sizes == []


async def test_run_over_keeps_failures_per_generator_with_include() -> None:
    chats = await echo().chat("hi").run_over("echo!a", "always_fail!b", on_failed="include")
    assert [c.failed for c in chats] == [False, True]
    assert [c.generator_id for c in chats] == ["echo!a", "always_fail!b"]


async def test_changing_a_wrapped_copys_params_leaves_the_original_alone() -> None:
    generator = EchoGenerator(model="e", params=GenerateParams(stop=["x"]))
    pipeline = generator.chat("hi").wrap(lambda call: call)
    pipeline.generator.params.temperature = 0.9
    assert pipeline.generator.params.stop is not None
    pipeline.generator.params.stop.append("y")
    assert generator.params.temperature is None
    assert generator.params.stop == ["x"]


async def test_chats_of_one_run_do_not_share_their_message_lists() -> None:
    pipeline = echo().chat("hi")
    first, second = await pipeline.run_many(2)
    first.messages.append(Message("user", "more"))
    assert len(second.messages) == 1
    assert len(pipeline.messages) == 1
    assert len((await pipeline.run()).messages) == 1


async def test_run_batch_refuses_a_single_string() -> None:
    with pytest.raises(TypeError, match=r"pass \[text\] for one input"):
        await echo().chat().run_batch("hello")


# -- a continued chat's server-side session ------------------------------------------------------


async def test_a_run_sees_its_own_session_and_never_an_outer_one() -> None:
    from jib._conversation import current_session, using_session

    seen: list[Any] = []

    def answer(messages: list[Message], params: GenerateParams) -> str:
        session = current_session()
        seen.append(None if session is None else session.id)
        return "ok"

    generator = CallbackGenerator(model="cb", callback=answer)
    session = {"id": "conv-1", "origin": "http://127.0.0.1:1"}
    outer = {"session": {"id": "outer", "origin": "http://127.0.0.1:2"}}

    await generator.chat("plain").run()
    await generator.chat("continued").meta(session=session).run_batch(["a", "b"])
    with using_session(outer):  # a run inside another conversation's (a `then` callback's)
        await generator.chat("plain").run()
        await generator.chat("continued").meta(session=session).run()

    assert seen == [None, "conv-1", "conv-1", None, "conv-1"]
