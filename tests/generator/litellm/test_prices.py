"""LiteLLM list prices read once per model give what LiteLLM's own `cost_per_token` gives."""

from __future__ import annotations

import pytest

from jib import get_generator
from jib.generator.litellm._prices import flat_rates
from jib.generator.litellm._runtime import import_litellm
from jib.messages import Usage

USAGES = [(0, 0), (1, 1), (1_000, 500), (7, 123_456), (250_000, 1_000)]


def litellm_cost(model: str, input_tokens: int, output_tokens: int) -> float:
    input_cost, output_cost = import_litellm().cost_per_token(
        model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
    )
    return float(input_cost) + float(output_cost)


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "openai/gpt-4o-mini", "mistral/mistral-large-latest"]
)
def test_a_flat_price_is_read_once_and_costs_what_litellm_says(model: str) -> None:
    generator = get_generator(model)

    assert flat_rates(import_litellm(), model) is not None
    for input_tokens, output_tokens in USAGES:
        expected = litellm_cost(model, input_tokens, output_tokens)
        cost = generator.list_price(Usage(input_tokens, output_tokens))
        assert cost == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_a_tiered_price_is_asked_of_litellm_every_time() -> None:
    model = "gemini/gemini-2.5-pro"  # dearer above 200k input tokens
    generator = get_generator(model)

    assert flat_rates(import_litellm(), model) is None
    small = generator.list_price(Usage(1_000, 0))
    large = generator.list_price(Usage(300_000, 0))
    assert small == pytest.approx(litellm_cost(model, 1_000, 0))
    assert large == pytest.approx(litellm_cost(model, 300_000, 0))
    assert large is not None and small is not None and large > 300 * small


def test_a_model_missing_from_the_map_has_no_rates_and_no_cost() -> None:
    model = "openai/my-own-model"

    assert flat_rates(import_litellm(), model) is None
    generator = get_generator(f"{model},api_base=http://127.0.0.1:9/v1")
    assert generator.list_price(Usage(10, 10)) is None
