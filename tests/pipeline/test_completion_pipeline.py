"""CompletionPipeline behaviour."""

from __future__ import annotations

import pytest

from jib import Completion, GenerateParams
from jib.errors import ServerError
from jib.testing import AlwaysFailGenerator, EchoGenerator


async def test_complete_returns_a_completion_with_text_and_generation() -> None:
    completion = await EchoGenerator(model="e", prefix=" then").complete("start").run()
    assert isinstance(completion, Completion)
    assert completion.text == "start"
    assert completion.generated == " thenstart"
    assert completion.all == "start thenstart"
    assert completion.content == completion.generated


async def test_completion_batch_appends_each_text_in_one_call() -> None:
    generator = EchoGenerator(model="e")
    completions = await generator.complete("Q: ").run_batch(["a", "b"], [None, GenerateParams()])
    assert generator.batch_sizes == [2]
    assert [c.text for c in completions] == ["Q: a", "Q: b"]


async def test_completion_continue_and_restart() -> None:
    generator = EchoGenerator(model="e")
    first = await generator.complete("ab").run()
    again = await first.continue_("c").run()
    assert again.text == "ababc"
    assert (await first.restart().run()).text == "ab"
    assert (await generator.complete("x").add("y").fork("z").run()).text == "xyz"


async def test_completion_failures_follow_on_failed() -> None:
    generator = AlwaysFailGenerator(model="x")
    completions = await generator.complete("a").run_many(2, on_failed="include")
    assert all(c.failed and isinstance(c.error, ServerError) for c in completions)
    assert await generator.complete("a").run_many(2, on_failed="skip") == []
    with pytest.raises(ServerError):
        await generator.complete("a").run()


def test_completion_takes_text_only() -> None:
    with pytest.raises(TypeError, match="takes text"):
        EchoGenerator(model="e").complete(["not", "text"])  # type: ignore[arg-type]


async def test_completion_json_round_trip_rebuilds_the_generator() -> None:
    completion = await EchoGenerator(model="e").complete("hi").with_(seed=3).run()
    loaded = Completion.from_json(completion.to_json())
    assert loaded.to_dict() == completion.to_dict()
    assert loaded.generator == EchoGenerator(model="e", params=GenerateParams(seed=3))
