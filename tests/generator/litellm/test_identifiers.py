"""LiteLLM identifiers: the default provider, its attributes, and secrets left out."""

from __future__ import annotations

import pickle

import pytest

import jib
from jib.generator.litellm import LiteLLMGenerator


@pytest.mark.parametrize(
    "identifier",
    [
        "gpt-4.1",
        "openai/o3-mini",
        "ollama_chat/qwen3:0.6b,api_base=http://127.0.0.1:11434",
        "ollama/llama3.2,api_base=http://127.0.0.1:11434,max_tokens=64",
        "hosted_vllm/Qwen/Qwen3-0.6B,api_base=http://127.0.0.1:8000/v1",
        "openai/google/gemma-7b,api_base=http://127.0.0.1:8000/v1,max_connections=4",
        "gpt-4o-mini,min_delay_between_requests=250,temperature=0.2",
        "gpt-4o-mini,min_delay_between_requests=2.5",
        "litellm!gpt-4o-mini,stop=output:;---,seed=1337",
    ],
)
def test_litellm_identifiers_build_litellm_generators_and_round_trip(identifier: str) -> None:
    generator = jib.get_generator(identifier)

    assert isinstance(generator, LiteLLMGenerator)
    assert generator.to_identifier() == identifier.removeprefix("litellm!")


def test_attributes_are_typed_and_validated() -> None:
    generator = jib.get_generator("gpt-4o,max_connections=3,min_delay_between_requests=100")

    assert isinstance(generator, LiteLLMGenerator)
    assert generator.max_connections == 3
    assert generator.min_delay_between_requests == 100.0
    with pytest.raises(jib.InvalidGeneratorError, match="max_connections"):
        jib.get_generator("gpt-4o,max_connections=0")
    with pytest.raises(jib.InvalidGeneratorError, match="min_delay_between_requests"):
        jib.get_generator("gpt-4o,min_delay_between_requests=-5")
    with pytest.raises(jib.InvalidGeneratorError, match="max_connections"):
        jib.get_generator("gpt-4o,max_connections=many")


def test_api_key_is_left_out_of_identifiers_and_reprs() -> None:
    generator = jib.get_generator("openai/gpt-4,api_key=sk-1234567890abcdef")

    assert generator.get_api_key() == "sk-1234567890abcdef"
    assert "sk-1234567890abcdef" not in generator.to_identifier()
    assert "sk-1234567890abcdef" not in repr(generator)
    assert generator.to_identifier(include_secrets=True).endswith("api_key=sk-1234567890abcdef")


def test_generator_survives_pickling_without_its_limiter_state() -> None:
    generator = LiteLLMGenerator(model="gpt-4o", max_connections=2)

    copy = pickle.loads(pickle.dumps(generator))

    assert copy == generator
    assert copy.to_identifier() == "gpt-4o,max_connections=2"


def test_load_imports_litellm_and_returns_the_generator() -> None:
    generator = LiteLLMGenerator(model="gpt-4o")

    assert generator.load() is generator
    assert generator.unload() is generator
