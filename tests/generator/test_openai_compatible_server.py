"""Remote generators end to end against `transformers serve`, a real OpenAI-compatible server.

Three routes to the same server, through the same tests: LiteLLM's `openai/` prefix (with an api
key, as any OpenAI-compatible endpoint) and `hosted_vllm/` prefix (vLLM's, same protocol), and
jib's native `openai!` generator.
"""

from __future__ import annotations

import pytest

import jib
from jib.generator.litellm import LiteLLMGenerator
from jib.generator.openai import OpenAIGenerator
from tests.support.openai_server import RunningServer

pytestmark = pytest.mark.slow

PREFIXES = ["openai", "hosted_vllm", "openai!"]


def _identifier(server: RunningServer, prefix: str, extra: str = "") -> str:
    key = ",api_key=sk-local" if prefix.startswith("openai") else ""
    route = prefix if prefix.endswith("!") else f"{prefix}/"
    return f"{route}{server.model},api_base={server.url}{key}{extra}"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_chat_run_returns_message_with_usage_and_stop_reason(
    openai_server: RunningServer, prefix: str
) -> None:
    generator = jib.get_generator(_identifier(openai_server, prefix, ",max_tokens=4"))

    chat = await generator.chat("hello world").run()

    assert not chat.failed
    assert chat.last.role == "assistant"
    assert chat.content.strip()
    assert chat.stop_reason == "length"
    assert chat.usage is not None
    assert chat.usage.output_tokens == 4
    assert chat.usage.input_tokens > 0
    assert chat.usage.total_tokens == chat.usage.input_tokens + chat.usage.output_tokens


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_max_tokens_limits_the_length_of_the_answer(
    openai_server: RunningServer, prefix: str
) -> None:
    generator = jib.get_generator(_identifier(openai_server, prefix))

    short = await generator.chat("say hello").with_(max_tokens=2).run()
    longer = await generator.chat("say hello").with_(max_tokens=7).run()

    assert short.usage is not None and longer.usage is not None
    assert short.usage.output_tokens == 2
    assert longer.usage.output_tokens == 7
    # The tiny model writes one word per token, so the text is cut to match.
    assert len(short.content.split()) == 2
    assert len(longer.content.split()) == 7


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_run_many_and_run_batch_answer_every_item(
    openai_server: RunningServer, prefix: str
) -> None:
    generator = jib.get_generator(_identifier(openai_server, prefix, ",max_tokens=3"))
    pipeline = generator.chat([{"role": "system", "content": "answer the question"}])

    many = await pipeline.add("what is the capital of france").run_many(3)
    batch = await pipeline.run_batch(
        ["one two three", "red green blue"],
        [jib.GenerateParams(max_tokens=1), None],
    )

    assert len(many) == 3
    assert all(chat.usage is not None and chat.usage.output_tokens == 3 for chat in many)
    assert [chat.usage.output_tokens for chat in batch if chat.usage] == [1, 3]
    assert [m.content for m in batch[1].messages] == ["answer the question", "red green blue"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_complete_returns_text_with_usage_and_stop_reason(
    openai_server: RunningServer, prefix: str
) -> None:
    generator = jib.get_generator(_identifier(openai_server, prefix, ",max_tokens=5"))

    completion = await generator.complete("the quick brown fox").run()

    assert not completion.failed
    assert completion.generated.strip()
    assert completion.stop_reason == "length"
    assert completion.usage is not None
    assert completion.usage.output_tokens == 5
    assert completion.usage.input_tokens == 4


@pytest.mark.parametrize(
    ("prefix", "cls"), [("openai", LiteLLMGenerator), ("openai!", OpenAIGenerator)]
)
async def test_chat_record_round_trips_through_json_and_rebuilds_the_generator(
    openai_server: RunningServer, prefix: str, cls: type[jib.Generator]
) -> None:
    generator = jib.get_generator(_identifier(openai_server, prefix, ",max_tokens=2"))

    chat = await generator.chat("hello").run()
    restored = jib.Chat.from_json(chat.to_json())

    assert restored.content == chat.content
    assert "sk-local" not in chat.to_json()
    assert isinstance(restored.generator, cls)
    assert restored.generator.api_base == openai_server.url


@pytest.mark.parametrize("prefix", ["openai", "openai!"])
async def test_a_streamed_chat_equals_the_run_one(
    openai_server: RunningServer, prefix: str
) -> None:
    # The tiny random model is deterministic with greedy decoding: both answers can be compared.
    generator = jib.get_generator(_identifier(openai_server, prefix, ",max_tokens=6,temperature=0"))

    ran = await generator.chat("the quick brown fox").run()
    stream = generator.chat("the quick brown fox").stream()
    deltas = [delta async for delta in stream]
    streamed = stream.chat

    assert len(deltas) > 1  # the text came in pieces
    assert "".join(deltas) == streamed.content == ran.content
    assert streamed.stop_reason == ran.stop_reason == "length"
    assert streamed.usage is not None and ran.usage is not None
    assert streamed.usage.output_tokens == ran.usage.output_tokens == 6
    assert streamed.attempts == 1
    assert streamed.to_dict()["generated"] == ran.to_dict()["generated"]
