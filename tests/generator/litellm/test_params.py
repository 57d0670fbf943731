"""Generation params reach the server through LiteLLM, and unsupported ones are dropped."""

from __future__ import annotations

import pytest

import jib
from jib.generator.litellm._runtime import import_litellm
from tests.support.fault_server import RunningFaultServer
from tests.support.ollama_server import RunningOllama

ALL_PARAMS = jib.GenerateParams(
    temperature=0.25,
    max_tokens=12,
    top_p=0.5,
    top_k=9,
    stop=["output:", "---"],
    seed=1337,
    presence_penalty=0.1,
    frequency_penalty=0.2,
    timeout=30,
    extra={"repetition_penalty": 1.1, "logit_bias": {"42": -100}},
)


def _generator(server: RunningFaultServer, extra: str = "") -> jib.Generator:
    return jib.get_generator(f"openai/stub,api_base={server.url},api_key=sk-test{extra}")


async def test_every_param_and_extra_reaches_an_openai_compatible_server(
    fault_server: RunningFaultServer,
) -> None:
    await _generator(fault_server).chat("hello", ALL_PARAMS).run()

    [body] = fault_server.state.requests
    assert body["model"] == "stub"
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 12
    assert body["top_p"] == 0.5
    assert body["top_k"] == 9
    assert body["stop"] == ["output:", "---"]
    assert body["seed"] == 1337
    assert body["presence_penalty"] == 0.1
    assert body["frequency_penalty"] == 0.2
    assert body["repetition_penalty"] == 1.1  # not an OpenAI param: passed on as it is
    assert body["logit_bias"] == {"42": -100}
    assert "drop_params" not in body  # LiteLLM's own argument, not the server's


async def test_text_completion_sends_prompt_and_params(fault_server: RunningFaultServer) -> None:
    completion = await _generator(fault_server, ",max_tokens=2,seed=7").complete("a b c d").run()

    [body] = fault_server.state.requests
    assert fault_server.state.paths == ["/v1/completions"]
    assert body["prompt"] in ("a b c d", ["a b c d"])
    assert body["max_tokens"] == 2
    assert body["seed"] == 7
    assert completion.generated == "a b"
    assert completion.stop_reason == "length"


async def test_params_merge_generator_then_pipeline_then_item(
    fault_server: RunningFaultServer,
) -> None:
    generator = _generator(fault_server, ",temperature=0.9,max_tokens=5,seed=1")
    pipeline = generator.chat().with_(temperature=0.1)

    await pipeline.run_batch(["x", "y"], [jib.GenerateParams(max_tokens=2), None])

    # The two requests run concurrently, so they may arrive in either order.
    by_prompt = {body["messages"][-1]["content"]: body for body in fault_server.state.requests}
    first, second = by_prompt["x"], by_prompt["y"]
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.1, 2, 1)
    assert (second["temperature"], second["max_tokens"], second["seed"]) == (0.1, 5, 1)


async def test_unsupported_param_is_dropped_instead_of_failing(ollama: RunningOllama) -> None:
    litellm = import_litellm()
    before = litellm.drop_params
    # Ollama has no presence penalty; LiteLLM would refuse the call without drop_params.
    generator = jib.get_generator(f"ollama_chat/tiny,api_base={ollama.url},presence_penalty=0.5")

    chat = await generator.chat("hello").run()

    assert not chat.failed
    assert "presence_penalty" not in str(ollama.state.requests)
    assert litellm.drop_params == before  # set per call, LiteLLM's global left alone


async def test_drop_params_can_be_turned_off_per_call(ollama: RunningOllama) -> None:
    generator = jib.get_generator(f"ollama_chat/tiny,api_base={ollama.url},presence_penalty=0.5")
    strict = jib.GenerateParams(extra={"drop_params": False})

    chat = await generator.chat("hello", strict).run(on_failed="include")

    assert isinstance(chat.error, jib.BadRequestError)
    assert "presence_penalty" in str(chat.error)


@pytest.mark.parametrize("prefix", ["ollama_chat", "ollama"])
async def test_api_key_and_api_base_go_to_ollama(ollama: RunningOllama, prefix: str) -> None:
    generator = jib.get_generator(f"{prefix}/tiny,api_base={ollama.url},api_key=sk-ollama-key")

    chat = await generator.chat("hello").run()

    assert not chat.failed
    generation = [
        headers
        for path, headers in zip(ollama.state.paths, ollama.state.headers, strict=True)
        if path in ("/api/chat", "/api/generate")
    ]
    assert [headers.get("authorization") for headers in generation] == ["Bearer sk-ollama-key"]
