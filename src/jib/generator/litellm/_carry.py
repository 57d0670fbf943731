"""What the LiteLLM path can carry to each provider, checked before anything is sent.

jib hands LiteLLM every message in the OpenAI shape (parts, tool calls, tool results,
`cache_control`) and every param (`tools`, `tool_choice`, `parallel_tool_calls`,
`response_format`, `modalities`, `audio`), and LiteLLM writes each provider's own format. Where
LiteLLM would leave something out without a word, jib refuses the item instead, naming the
provider and what it cannot carry:

- **parts**: `CARRIED_PARTS` lists, per LiteLLM provider, the part types LiteLLM 1.110 writes into
  that provider's request (read in its prompt factories, and checked against servers by
  tests/generator/beyond_text/test_litellm_carry.py, which fails when a LiteLLM upgrade changes
  one). A route missing from the table is not checked: LiteLLM's own rules apply;
- **params**: jib calls LiteLLM with `drop_params=True` (sampling params a provider lacks are
  dropped, see the generator), but a beyond-text param is not a detail to lose: one the provider
  does not take (LiteLLM's `get_supported_openai_params`) is refused, unless the user passed
  `extra={"drop_params": True}` to ask for dropping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jib.errors import ProcessingError
from jib.messages import Message
from jib.params import GenerateParams

__all__ = ["BEYOND_TEXT_PARAMS", "CARRIED_PARTS", "check_params", "check_parts"]

_ALL = frozenset({"image_url", "input_audio", "file"})
_OPENAI_SHAPE = (
    "openai",
    "custom_openai",
    "azure",
    "hosted_vllm",
    "lm_studio",
    "llamafile",
    "deepinfra",
    "perplexity",
    "groq",
    "together_ai",
    "openrouter",
    "xai",
)

CARRIED_PARTS: Mapping[str, frozenset[str]] = {
    # The OpenAI shape passed on as it is: the server decides what it reads.
    **dict.fromkeys(_OPENAI_SHAPE, _ALL),
    # `inline_data` for images, audio and documents.
    "gemini": _ALL,
    # `image` and `document` blocks; audio is left out.
    "anthropic": frozenset({"image_url", "file"}),
    "mistral": frozenset({"image_url", "file"}),
    # LiteLLM refuses documents for Fireworks itself, with a message of its own.
    "fireworks_ai": frozenset({"image_url", "input_audio"}),
    # Ollama's `images`; audio and documents are left out.
    "ollama": frozenset({"image_url"}),
    "ollama_chat": frozenset({"image_url"}),
    # Content flattened to text.
    "deepseek": frozenset(),
    "text-completion-openai": frozenset(),
}
"""The non-text part types (`image_url`, `input_audio`, `file`) LiteLLM carries to each provider
(its `custom_llm_provider`); text is carried everywhere."""

BEYOND_TEXT_PARAMS = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "modalities",
    "audio",
)
"""The params a provider must take or refuse: never dropped quietly."""

_SUGGESTED = ("openai", "gemini", "anthropic", "hosted_vllm")
_PART_NAMES = {"image_url": "an image", "input_audio": "an audio", "file": "a file"}


def check_parts(messages: Sequence[Message], provider: str, label: str) -> None:
    """Refuse a part LiteLLM would leave out of `provider`'s request.

    Raises:
        ProcessingError: names `label` (the generator), the part, and where it is.
    """
    carried = CARRIED_PARTS.get(provider)
    if carried is None or carried == _ALL:
        return
    for number, message in enumerate(messages, 1):
        if not message.has_parts:
            continue
        for position, part in enumerate(message.content_parts, 1):
            kind = part.type
            if kind == "text" or kind in carried:
                continue
            takes = [f"{name}/" for name in _SUGGESTED if kind in CARRIED_PARTS[name]]
            raise ProcessingError(
                f"[{label}] cannot carry {_PART_NAMES.get(kind, 'a')} part ({kind!r}, message "
                f"{number}, part {position}): LiteLLM leaves it out of {provider} requests. "
                f"Remove it, or send it where it is carried ({', '.join(takes)}, ...)"
            )


def check_params(params: GenerateParams, supported: Sequence[str] | None, label: str) -> None:
    """Refuse a beyond-text param the provider does not take (`supported`: LiteLLM's list for
    it, `None` when LiteLLM does not know the provider), unless dropping was asked for.

    Raises:
        ProcessingError: names `label` and the params.
    """
    if supported is None or params.extra.get("drop_params") is True:
        return
    refused = [
        name
        for name in BEYOND_TEXT_PARAMS
        if (getattr(params, name) is not None or name in params.extra) and name not in supported
    ]
    if refused:
        raise ProcessingError(
            f"[{label}] cannot carry {', '.join(refused)}: LiteLLM does not send "
            f"{'it' if len(refused) == 1 else 'them'} to this provider. Leave "
            f"{'it' if len(refused) == 1 else 'them'} out, or pass "
            "extra={'drop_params': True} to send the request without"
        )
