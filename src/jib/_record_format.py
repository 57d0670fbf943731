"""Which record format version a record's data needs (the versions are described in
`jib._records`).

Apart from the models of `jib._records`, so writing a record (`Chat.to_dict`, every chat a run
stores) does not build them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECORD_FORMAT_VERSION", "format_version"]

RECORD_FORMAT_VERSION = 2
"""Version of the JSON form of records; bump it (and teach loading the old form) on a change."""

_FIRST_MESSAGE_KEYS = frozenset({"role", "content"})
_FIRST_USAGE_KEYS = frozenset({"input_tokens", "output_tokens", "total_tokens"})


def format_version(data: dict[str, Any]) -> int:
    """The oldest record format that holds a record dict (`to_dict` form): 1 unless it has
    parts, tool calls, cache marks, the newer token counts or an `output`."""
    if data.get("output") is not None:
        return 2
    usage = data.get("usage")
    if isinstance(usage, dict) and not usage.keys() <= _FIRST_USAGE_KEYS:
        return 2
    for name in ("messages", "generated"):
        messages = data.get(name)
        if not isinstance(messages, list):
            continue
        for message in messages:
            if not isinstance(message, dict):
                continue
            if not message.keys() <= _FIRST_MESSAGE_KEYS or not isinstance(
                message.get("content"), str
            ):
                return 2
    return 1
