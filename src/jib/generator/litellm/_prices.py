"""LiteLLM's list prices, looked up once per model rather than once per call.

`litellm.cost_per_token` costs about a quarter of a millisecond a call, more than the rest of a
chat's bookkeeping together. Most models are priced per token, flat: then the cost of a call is
`input_tokens × a + output_tokens × b`, and `a` and `b` are read once. A model whose price map
entry has tiers (`…_above_200k_tokens`, `tiered_pricing`) is not flat, and neither is one whose
costs, probed at a few token counts, do not add up that way: for those LiteLLM is asked every
time, as before.
"""

from __future__ import annotations

import functools
import math
from typing import Any

__all__ = ["flat_rates"]

_PROBES = ((1_000, 0), (0, 1_000), (123_457, 7_654))


def _cost(litellm: Any, model: str, input_tokens: int, output_tokens: int) -> float:
    input_cost, output_cost = litellm.cost_per_token(
        model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
    )
    return float(input_cost) + float(output_cost)


def _tiered(litellm: Any, model: str) -> bool:
    try:
        info = litellm.get_model_info(model)
    except Exception:  # not in the map: let cost_per_token say what it knows
        return True
    return any(("above" in key or "tier" in key) and value for key, value in dict(info).items())


@functools.lru_cache(maxsize=512)
def flat_rates(litellm: Any, model: str) -> tuple[float, float] | None:
    """(US dollars per input token, per output token) when `model`'s list price is flat, else
    `None` (tiered, unknown, or not adding up: ask `cost_per_token` each time)."""
    if _tiered(litellm, model):
        return None
    try:
        per_input = _cost(litellm, model, 1_000, 0) / 1_000
        per_output = _cost(litellm, model, 0, 1_000) / 1_000
        probes = [(i, o, _cost(litellm, model, i, o)) for i, o in _PROBES]
    except Exception:  # LiteLLM raises its own errors for a model its map does not price
        return None
    for input_tokens, output_tokens, cost in probes:
        flat = input_tokens * per_input + output_tokens * per_output
        if not math.isclose(cost, flat, rel_tol=1e-9, abs_tol=1e-15):
            return None
    return per_input, per_output
