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

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}
_URL_SHOWN = 60
_INLINE_IMAGE = re.compile(
    r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/]*={0,2})", re.ASCII
)
"""A data URL a report may show as an image: a raster type, and nothing but base64 after it."""


def size_text(size: int) -> str:
    """`512 B`, `12 KB`, `1.5 MB` (1 KB = 1,024 bytes).

    >>> size_text(512), size_text(12_345), size_text(1_572_864)
    ('512 B', '12 KB', '1.5 MB')
    """
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{round(size / 1024)} KB"
    return f"{size / 1024**2:.1f} MB"


def data_size(payload: str) -> int:
    """The bytes a base64 text holds, counted without decoding it."""
    payload = payload.strip()
    return len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))


def _data_url(url: str) -> tuple[str, int] | None:
    """The type and size of a `data:` URL, or None for another URL."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    mimetype = header[5:].split(";", 1)[0] or "application/octet-stream"
    return mimetype, data_size(payload)


def _url_text(url: str) -> str:
    return url if len(url) <= _URL_SHOWN else url[: _URL_SHOWN - 1] + "…"


def parts_of(message: Mapping[str, Any]) -> list[Any]:
    """The parts of a message dict (a string content is one text part; none is none)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def part_label(part: Any) -> str:
    """The label of a part that is not text (see the module docs)."""
    if not isinstance(part, Mapping):
        return "[part]"
    kind = part.get("type")
    body = part.get(kind) if isinstance(kind, str) else None
    if kind == "image_url":
        url = body.get("url") if isinstance(body, Mapping) else body
        return _labelled("image", url)
    if kind == "input_audio" and isinstance(body, Mapping):
        data, format = body.get("data"), body.get("format")
        mimetype = _AUDIO_TYPES.get(str(format), f"audio/{format}")
        return f"[{mimetype} {size_text(data_size(data))}]" if isinstance(data, str) else "[audio]"
    if kind == "file" and isinstance(body, Mapping):
        label = _labelled("file", body.get("file_data") or body.get("file_url"))
        name = body.get("filename")
        return label[:-1] + f" {name}]" if isinstance(name, str) and name else label
    return f"[{kind}]" if isinstance(kind, str) and kind else "[part]"


def _labelled(kind: str, url: Any) -> str:
    if not isinstance(url, str):
        return f"[{kind}]"
    inline = _data_url(url)
    if inline is not None:
        return f"[{inline[0]} {size_text(inline[1])}]"
    return f"[{kind} {_url_text(url)}]"


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
    pieces = [str(p.get("text", "")) if _is_text(p) else part_label(p) for p in parts_of(message)]
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
