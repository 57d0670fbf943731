"""How a stored message reads on screen: its text, a label per part, its tool calls.

Works on the dict form of messages (the OpenAI shape `Chat.to_dict` writes and the store gives
back), which is data: any shape is shown without trusting it — a part of an unknown type is
`[type]`, a malformed one `[part]` — and nothing here escapes: callers pass the text through
`jib.cli._terminal.printable` (terminals) or HTML escaping (the report).

- A part that is not text is a label: `[image/png 12 KB]`, `[audio/wav 3 KB]`,
  `[application/pdf 40 KB report.pdf]`, or for a URL `[image https://…]`.
- A tool call is a line `-> name({"arg": 1})` (the arguments as the model wrote them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jib.content import data_size, describe_part, size_text

__all__ = [
    "call_line",
    "data_size",
    "inline_image",
    "part_label",
    "parts_of",
    "readable",
    "size_text",
    "text_of",
    "tool_calls_of",
]

_INLINE_IMAGE = re.compile(
    r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/]*={0,2})", re.ASCII
)
"""A data URL a report may show as an image: a raster type, and nothing but base64 after it."""


def parts_of(message: Mapping[str, Any]) -> list[Any]:
    """The parts of a message dict (a string content is one text part; none is none)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _is_text(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") == "text"


def text_of(message: Mapping[str, Any]) -> str:
    """The text of a message dict: its string content, or its text parts joined by newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in parts_of(message) if _is_text(part))


def readable(message: Mapping[str, Any]) -> str:
    """The text of a message dict with a label for each other part, in order (one per line).

    >>> readable({"role": "user", "content": [{"type": "text", "text": "What is it?"},
    ...     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}]})
    'What is it?\\n[image/png 4 B]'
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    pieces = [
        str(p.get("text", "")) if _is_text(p) else describe_part(p) for p in parts_of(message)
    ]
    return "\n".join(pieces)


def tool_calls_of(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (name, arguments) of each tool call of a message dict."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    found = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        arguments = function.get("arguments")
        found.append(
            (str(function.get("name", "?")), arguments if isinstance(arguments, str) else "{}")
        )
    return found


def call_line(name: str, arguments: str) -> str:
    """`-> name(arguments)`.

    >>> call_line("get_weather", '{"city": "Paris"}')
    '-> get_weather({"city": "Paris"})'
    """
    return f"-> {name}({arguments})"


def inline_image(part: Any) -> tuple[str, str] | None:
    """The type and `data:` URL of an image part a report may show inline (PNG, JPEG, GIF or
    WebP as well-formed base64), else None."""
    if not isinstance(part, Mapping) or part.get("type") != "image_url":
        return None
    body = part.get("image_url")
    url = body.get("url") if isinstance(body, Mapping) else body
    if not isinstance(url, str):
        return None
    matched = _INLINE_IMAGE.fullmatch(url)
    return (matched.group(1), url) if matched else None


part_label = describe_part
"""The label of a part that is not text (see `jib.content.describe_part`)."""
