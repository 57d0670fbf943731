"""Copies of remote generators after they have sent requests: `copy.deepcopy`,
`model_copy(deep=True)` and a pickle round trip all work, and the copies share limits as
documented: a copy in this process shares the limiter and the connection pools (the limits are
the provider's), a pickled copy (another process) starts with fresh ones."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jib
from jib import Message
from jib.generator import Generator, RequestGenerator
from jib.generator._wired import WiredGenerator
from jib.generator.http import HTTPGenerator
from jib.testing import CallbackGenerator
from tests.support.scripted_server import (
    Answer,
    ReceivedRequest,
    ScriptedServer,
    http_answer,
    serve_script,
)

ANSWER = {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}


def _answer(request: ReceivedRequest, answer: Answer) -> None:
    answer.write(http_answer(200, ANSWER))


def echo_last(messages: list[Message], params: Any) -> str:
    """A module-level callback, so the generator holding it pickles."""
    return "ok"


@pytest.fixture(scope="module")
def stub() -> Iterator[ScriptedServer]:
    with serve_script(_answer) as running:
        yield running


BUILDERS: dict[str, Callable[[str], Generator]] = {
    "litellm": lambda url: jib.get_generator(f"openai/m,api_base={url}/v1,api_key=sk-x,rpm=6000"),
    "openai!": lambda url: jib.get_generator(f"openai!m,api_base={url}/v1,rpm=6000"),
    "http!": lambda url: HTTPGenerator.for_json_endpoint(
        f"{url}/v1/chat/completions",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        state={"session": "s-1"},
        rpm=6000,
    ),
    "callback": lambda url: CallbackGenerator(model="cb", callback=echo_last, rpm=6000),
}

COPIES: dict[str, Callable[[Generator], Generator]] = {
    "deepcopy": copy.deepcopy,
    "model_copy(deep=True)": lambda generator: generator.model_copy(deep=True),
    "copy": copy.copy,
    "pickle": lambda generator: pickle.loads(pickle.dumps(generator)),
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("provider", sorted(BUILDERS))
async def test_a_used_remote_generator_copies_and_the_copy_works(
    stub: ScriptedServer, provider: str, how: str
) -> None:
    generator = BUILDERS[provider](stub.url)
    assert isinstance(generator, RequestGenerator)
    assert (await generator.chat("warm up")).content == "ok"

    copied = COPIES[how](generator)

    assert copied == generator
    assert (await copied.chat("again")).content == "ok"
    in_process = how != "pickle"
    # The same limits and pools in this process; fresh ones in another.
    assert (copied._request_limiter() is generator._request_limiter()) is in_process
    if isinstance(generator, WiredGenerator):
        assert isinstance(copied, WiredGenerator)
        assert (copied.wire is generator.wire) is in_process
    if isinstance(generator, HTTPGenerator):
        assert isinstance(copied, HTTPGenerator)
        assert copied.state == {"session": "s-1"}
        assert (copied.state is generator.state) is (how == "copy")


def test_a_pickled_copy_works_on_another_event_loop(stub: ScriptedServer) -> None:
    generator = BUILDERS["openai!"](stub.url)
    assert asyncio.run(generator.chat("first").run()).content == "ok"

    async def again() -> str:
        copied = pickle.loads(pickle.dumps(generator))
        return (await copied.chat("second")).content

    assert asyncio.run(again()) == "ok"
