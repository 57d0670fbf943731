"""LiteLLMGenerator end to end against a server speaking Ollama's wire protocol.

`ollama_chat/` goes to `/api/chat`, `ollama/` to `/api/generate`; both report Ollama's token
counts, which is how a silently truncated prompt is noticed.
"""

from __future__ import annotations

import warnings

import pytest

import jib
from jib.generator.litellm._runtime import warn_if_truncated
from tests.support.fault_server import RunningFaultServer
from tests.support.ollama_server import RunningOllama

PREFIXES = ["ollama_chat", "ollama"]
ENDPOINTS = {"ollama_chat": "/api/chat", "ollama": "/api/generate"}
LONG_PROMPT = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # 360 words


def _generator(ollama: RunningOllama, prefix: str, extra: str = "") -> jib.Generator:
    return jib.get_generator(f"{prefix}/tiny:latest,api_base={ollama.url}{extra}")


def _generation_requests(ollama: RunningOllama) -> list[dict[str, object]]:
    return [
        body
        for path, body in zip(ollama.state.paths, ollama.state.requests, strict=True)
        if path in ("/api/chat", "/api/generate")
    ]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_chat_returns_message_with_ollama_usage_and_stop_reason(
    ollama: RunningOllama, prefix: str
) -> None:
    chat = await _generator(ollama, prefix).chat("red green blue").run()

    assert not chat.failed
    assert chat.last.role == "assistant"
    assert "red green blue" in chat.content
    assert chat.stop_reason == "stop"
    assert chat.usage is not None
    assert chat.usage.output_tokens == len(chat.content.split())
    assert chat.usage.input_tokens > 0
    assert ENDPOINTS[prefix] in ollama.state.paths


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_max_tokens_reaches_ollama_as_num_predict_and_cuts_the_answer(
    ollama: RunningOllama, prefix: str
) -> None:
    generator = _generator(ollama, prefix, ",max_tokens=2")

    chat = await generator.chat("one two three four five six").run()

    assert chat.usage is not None and chat.usage.output_tokens == 2
    assert len(chat.content.split()) == 2
    assert chat.stop_reason == "length"
    [request] = _generation_requests(ollama)
    assert request["options"]["num_predict"] == 2  # type: ignore[index]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_sampling_params_and_extra_reach_ollama_options(
    ollama: RunningOllama, prefix: str
) -> None:
    params = jib.GenerateParams(
        temperature=0.3,
        top_p=0.9,
        top_k=7,
        seed=1337,
        stop=["output:", "---"],
        max_tokens=16,
        extra={"num_ctx": 4096},
    )

    await _generator(ollama, prefix).chat("hello", params).run()

    [request] = _generation_requests(ollama)
    assert request["model"] == "tiny:latest"
    options = request["options"]
    assert isinstance(options, dict)
    assert options["temperature"] == 0.3
    assert options["top_p"] == 0.9
    assert options["top_k"] == 7
    assert options["seed"] == 1337
    assert options["stop"] == ["output:", "---"]
    assert options["num_predict"] == 16
    assert options["num_ctx"] == 4096


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_complete_and_run_batch_against_ollama(ollama: RunningOllama, prefix: str) -> None:
    generator = _generator(ollama, prefix, ",max_tokens=3")

    completion = await generator.complete("one two three four").run()
    batch = await generator.chat().with_(max_tokens=50).run_batch(["a b", "c d e f g"])

    assert completion.generated == "one two three"
    assert completion.stop_reason == "length"
    assert completion.usage is not None and completion.usage.output_tokens == 3
    assert "a b" in batch[0].content  # ollama/ sends a rendered prompt, which the server echoes
    assert "c d e f g" in batch[1].content
    assert [chat.stop_reason for chat in batch] == ["stop", "stop"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_run_many_sends_one_request_per_answer(ollama: RunningOllama, prefix: str) -> None:
    generator = _generator(ollama, prefix, ",max_tokens=2")

    chats = await generator.chat("one two three four").run_many(3)

    assert len(chats) == 3
    assert len(_generation_requests(ollama)) == 3
    for chat in chats:
        assert not chat.failed
        assert chat.stop_reason == "length"
        assert chat.usage is not None and chat.usage.output_tokens == 2
        assert len(chat.content.split()) == 2


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_truncation_warning_when_ollama_reports_far_fewer_input_tokens(
    ollama: RunningOllama, prefix: str
) -> None:
    ollama.state.reset(truncate_to=64)
    generator = _generator(ollama, prefix)

    with pytest.warns(jib.GeneratorWarning, match="Input messages may have been truncated"):
        chat = await generator.chat(LONG_PROMPT).run()

    assert chat.usage is not None and chat.usage.input_tokens == 64


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_truncation_warning_for_text_completion(ollama: RunningOllama, prefix: str) -> None:
    ollama.state.reset(truncate_to=50)

    with pytest.warns(jib.GeneratorWarning, match=r"reported 50 input tokens"):
        await _generator(ollama, prefix).complete(LONG_PROMPT).run()


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("prompt", "truncate_to"),
    [
        (LONG_PROMPT, None),  # long prompt, all of it counted
        (LONG_PROMPT, 4096),  # a context window larger than the prompt
        ("hello there", 2),  # short prompts are never reported
    ],
)
async def test_no_truncation_warning_when_input_was_counted_in_full(
    ollama: RunningOllama, prefix: str, prompt: str, truncate_to: int | None
) -> None:
    ollama.state.reset(truncate_to=truncate_to)

    with warnings.catch_warnings():
        warnings.simplefilter("error", jib.GeneratorWarning)
        chat = await _generator(ollama, prefix).chat(prompt).run()

    assert not chat.failed


async def test_truncation_is_not_checked_for_other_providers(
    fault_server: RunningFaultServer,
) -> None:
    fault_server.state.reset(truncate_to=64)  # the same report that warns for Ollama
    generator = jib.get_generator(f"openai/stub,api_base={fault_server.url},api_key=sk-test")

    with warnings.catch_warnings():
        warnings.simplefilter("error", jib.GeneratorWarning)
        chat = await generator.chat(LONG_PROMPT).run()

    assert not chat.failed
    assert chat.usage is not None and chat.usage.input_tokens == 64
    # Those numbers alone would warn: what keeps quiet is the provider, not the counts.
    with pytest.warns(jib.GeneratorWarning, match="Input messages may have been truncated"):
        warn_if_truncated("ollama_chat/stub", [LONG_PROMPT], chat.usage)
