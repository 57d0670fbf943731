"""LiteLLM at run time: importing it quietly offline, reading its responses, spotting truncation.

Kept apart from the generator class so the class reads as configuration and flow.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from jib.errors import GeneratorWarning, MissingDependencyError
from jib.messages import GeneratedMessage, GeneratedText, Message, Usage, normalize_stop_reason

__all__ = [
    "COST_MAP_SETTING",
    "OLLAMA_PREFIXES",
    "fix_ollama_stop_reason",
    "import_litellm",
    "to_generated_message",
    "to_generated_text",
    "warn_if_truncated",
]

COST_MAP_SETTING = "LITELLM_LOCAL_MODEL_COST_MAP"
"""LiteLLM's setting that makes it read its bundled model price map instead of downloading one."""

OLLAMA_PREFIXES = ("ollama/", "ollama_chat/")

TRUNCATION_RATIO = 0.5
"""Warn when the server counts fewer input tokens than this share of our lower-bound estimate."""
TRUNCATION_MIN_TOKENS = 32
"""Prompts estimated shorter than this are never reported: too small to truncate, too noisy."""


def import_litellm() -> ModuleType:
    """Import LiteLLM, the first time making it use its bundled model price map.

    At import LiteLLM downloads a price map from the internet unless `LITELLM_LOCAL_MODEL_COST_MAP`
    is set; offline that costs seconds of retries and a warning. jib sets it to `True` unless the
    user has set it (to anything), so an explicit choice is always kept. Nothing else of LiteLLM's
    configuration is touched.

    Raises:
        MissingDependencyError: LiteLLM is not installed.
    """
    module = sys.modules.get("litellm")
    if module is not None:
        return module
    os.environ.setdefault(COST_MAP_SETTING, "True")
    try:
        import litellm
    except ImportError as exc:
        raise MissingDependencyError("litellm", "litellm", "LiteLLMGenerator") from exc
    return litellm


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _usage(response: Any) -> Usage | None:
    usage = _get(response, "usage")
    if usage is None:
        return None
    input_tokens = _get(usage, "prompt_tokens") or 0
    output_tokens = _get(usage, "completion_tokens") or 0
    total_tokens = _get(usage, "total_tokens") or 0
    return Usage(int(input_tokens), int(output_tokens), int(total_tokens))


def _first_choice(response: Any) -> Any:
    choices = _get(response, "choices") or []
    if not choices:
        raise ValueError("the response has no choices")
    return choices[0]


def _response_extra(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for name in ("id", "model"):
        value = _get(response, name)
        if value is not None:
            extra[f"response_{name}" if name == "id" else name] = value
    return extra


def to_generated_message(response: Any) -> GeneratedMessage:
    """A `GeneratedMessage` from a LiteLLM `ModelResponse`.

    `extra` holds the response id and model, and `reasoning_content` / `tool_calls` when the
    model sent them.
    """
    choice = _first_choice(response)
    message = _get(choice, "message")
    content = _get(message, "content") or ""
    extra = _response_extra(response)
    reasoning = _get(message, "reasoning_content")
    if reasoning:
        extra["reasoning_content"] = reasoning
    tool_calls = _get(message, "tool_calls")
    if tool_calls:
        extra["tool_calls"] = [
            call.model_dump() if hasattr(call, "model_dump") else call for call in tool_calls
        ]
    return GeneratedMessage(
        Message("assistant", str(content)),
        normalize_stop_reason(_get(choice, "finish_reason")),
        _usage(response),
        extra,
    )


def to_generated_text(response: Any) -> GeneratedText:
    """A `GeneratedText` from a LiteLLM `TextCompletionResponse`."""
    choice = _first_choice(response)
    return GeneratedText(
        str(_get(choice, "text") or ""),
        normalize_stop_reason(_get(choice, "finish_reason")),
        _usage(response),
        _response_extra(response),
    )


def fix_ollama_stop_reason(
    model: str, generated: GeneratedMessage | GeneratedText, max_tokens: int | None
) -> None:
    """Report `length` for an `ollama/` answer that used all of `max_tokens`.

    LiteLLM reads Ollama's generate API (`ollama/`) as always stopping with `stop`, dropping the
    `done_reason` Ollama sends; an answer exactly `max_tokens` long was almost surely cut.
    """
    usage = generated.usage
    if (
        model.startswith("ollama/")
        and generated.stop_reason == "stop"
        and max_tokens is not None
        and usage is not None
        and usage.output_tokens >= max_tokens
    ):
        generated.stop_reason = "length"


def estimate_min_tokens(texts: Iterable[str]) -> int:
    """A lower bound on how many tokens any common tokenizer makes of `texts`.

    Every whitespace-separated word is at least one token, and no common tokenizer packs more
    than about 8 characters into a token on average.
    """
    return sum(max(len(text.split()), len(text) // 8) for text in texts)


def warn_if_truncated(model: str, texts: Iterable[str], usage: Usage | None) -> None:
    """Warn (`GeneratorWarning`) when Ollama reports far fewer input tokens than were sent.

    Ollama cuts prompts longer than its context window (`num_ctx`) without an error; the only
    sign is a low `prompt_eval_count`. Only `ollama/` and `ollama_chat/` models are checked.
    """
    if not model.startswith(OLLAMA_PREFIXES) or usage is None or usage.input_tokens <= 0:
        return
    estimate = estimate_min_tokens(texts)
    if estimate < TRUNCATION_MIN_TOKENS or usage.input_tokens >= estimate * TRUNCATION_RATIO:
        return
    warnings.warn(
        f"Input messages may have been truncated: {model} reported {usage.input_tokens} input "
        f"tokens for a prompt of at least {estimate}. Ollama silently drops the start of prompts "
        "longer than its context window; raise it, e.g. with params "
        "extra={'num_ctx': 8192}, or send less.",
        GeneratorWarning,
        stacklevel=2,
    )
