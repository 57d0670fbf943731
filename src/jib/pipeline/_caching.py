"""Prompt-cache marks (`ChatPipeline.cache`): where a provider's prompt cache may end.

`"latest"` marks the latest two non-assistant messages with `{"type": "ephemeral"}`, as the
seed's own system does: the system prompt or the conversation so far is then read from the
provider's cache on the next request (Anthropic's, through LiteLLM; OpenAI caches without
marks). Marks already on the messages or their parts are cleared first, so the pipeline alone
decides where the (few: Anthropic allows four) cache breakpoints go.

This is the provider's prompt cache; jib's own response cache is another thing
(`jib run --cache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from jib.messages import Message

__all__ = ["EPHEMERAL", "CacheMode", "mark_latest"]

CacheMode = Literal["latest"]
"""How a pipeline marks messages for the prompt cache."""

EPHEMERAL = {"type": "ephemeral"}
"""The mark providers' prompt caches read."""

_MARKED = 2


def mark_latest(messages: Sequence[Message]) -> list[Message]:
    """Copies of `messages` whose latest two non-assistant messages alone carry a mark.

    Messages that keep their state are not copied (parts, and their data, are shared anyway).

    >>> marked = mark_latest([Message("system", "Be brief."), Message("user", "Hi")])
    >>> [message.cache_control for message in marked]
    [{'type': 'ephemeral'}, {'type': 'ephemeral'}]
    """
    latest = [i for i, message in enumerate(messages) if message.role != "assistant"][-_MARKED:]
    return [
        _marked(message, dict(EPHEMERAL) if i in latest else None)
        for i, message in enumerate(messages)
    ]


def _marked(message: Message, mark: dict[str, str] | None) -> Message:
    parts = message.content_parts if message.has_parts else []
    marked_parts = any(part.cache_control is not None for part in parts)
    if message.cache_control == mark and not marked_parts:
        return message
    copy = message.with_cache_control(mark)
    if marked_parts:
        copy.content = [dataclasses.replace(part, cache_control=None) for part in parts]
    return copy
