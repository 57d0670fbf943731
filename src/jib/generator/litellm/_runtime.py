"""LiteLLM at run time: importing it quietly offline, Ollama's stop reasons, spotting truncation.

Its answers are read by the one OpenAI reader (`jib.generator.openai._protocol`).

Kept apart from the generator class so the class reads as configuration and flow.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from types import ModuleType

from jib.errors import GeneratorWarning, MissingDependencyError
from jib.messages import GeneratedMessage, GeneratedText, Usage

__all__ = [
    "COST_MAP_SETTING",
    "OLLAMA_PREFIXES",
    "fix_ollama_stop_reason",
    "import_litellm",
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
