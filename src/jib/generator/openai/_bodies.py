"""Request bodies: inline media written without re-escaping or copying, and encoded once per
item.

A chat carrying a 1 MB image is 1.4 MB of JSON, and Python's JSON encoder escapes a string at
about 150 MB/s: 9 ms of CPU for the image alone, several times what sending it costs. So:

- `encode_body` leaves each inline payload (a part's `data:` URL, an audio clip's base64) out of
  `json.dumps` and sends it as a piece of its own between the pieces of JSON around it (the wire
  writes them one after another, see `jib._wire.models.Body`): a payload is base64, checked when its
  part was made (parts are frozen), and base64 needs no escaping in JSON. `PayloadBytes` keeps
  each payload's bytes (the most recently used, up to 64 MiB per generator), so a batch sending
  one image a thousand times encodes it once.
- `EncodedBodies` keeps the body each item last sent, keyed by the asyncio task the item runs in
  (the request tier runs each item of a batch in a task of its own, and a stream in its
  caller's), and hands it back while the next attempt (a retry) would send the same body: the
  same messages and params objects, and an equal body dict. The equality test is cheap: an
  attempt's dict holds the very strings the parts hold, and Python compares a string with itself
  by identity. Entries go with their task (weakly held), and are dropped as soon as an attempt
  succeeds or fails for good, so a long-lived task keeps no image it will not send again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from jib._wire.models import Body
from jib.messages import Message
from jib.params import GenerateParams

__all__ = ["INLINE_MIN", "EncodedBodies", "PayloadBytes", "encode_body"]

INLINE_MIN = 2048
"""Payloads shorter than this (characters) are left to `json.dumps`: a piece of their own costs
more."""

_TOKEN = f"jib-inline-{secrets.token_hex(16)}-"
"""Stands in for a payload while the rest of the body is encoded; random, so no text holds it."""
_QUOTED_TOKEN = f'"{_TOKEN}'
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class PayloadBytes:
    """Inline payloads already written as bytes, by string (the same part's string, in every
    chat that sends it). The most recently used are kept, up to `limit` bytes in all."""

    __slots__ = ("_entries", "_size", "limit")

    def __init__(self, limit: int = 64 << 20) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._size = 0

    def get(self, value: str, start: int = 0) -> bytes:
        """`value[start:]` as ASCII bytes (`start` the same for the same `value`)."""
        key = id(value)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is value:
            self._entries.move_to_end(key)
            return entry[1]
        data = value[start:].encode("ascii")
        if len(data) <= self.limit:
            if entry is not None:
                self._forget(key)
            self._entries[key] = (value, data)
            self._size += len(data)
            while self._size > self.limit:
                self._forget(next(iter(self._entries)))
        return data

    def _forget(self, key: int) -> None:
        self._size -= len(self._entries.pop(key)[1])


def encode_body(
    body: dict[str, Any], *, from_parts: bool = True, payloads: PayloadBytes | None = None
) -> Body:
    """`body` as JSON (the bytes `json.dumps(body).encode()` writes): one `bytes`, or, when it
    holds inline payloads, the pieces to send one after another. `body` is left as it is.

    `from_parts`: whether the body's messages were written by jib's parts, whose payloads are
    known to be base64; `False` (messages given some other way) escapes everything.
    `payloads`: where payloads already written as bytes are kept, for the next body.
    """
    inline: list[str] = []
    messages = body.get("messages")
    if from_parts and type(messages) is list:
        swapped = [_swap_message(message, inline) for message in messages]
        if inline:
            body = {**body, "messages": swapped}
    text = json.dumps(body)
    if not inline:
        return text.encode()
    known = payloads if payloads is not None else PayloadBytes(0)
    pieces = text.split(_QUOTED_TOKEN)
    out: list[bytes] = []
    head = pieces[0]
    for piece in pieces[1:]:
        number, _, rest = piece.partition('"')
        value = inline[int(number)]
        start = value.index(",") + 1 if value.startswith("data:") else 0
        # The header (a media type) is short: escaped as JSON always is.
        out.append((head + json.dumps(value[:start])[:-1]).encode())
        out.append(known.get(value, start))
        head = '"' + rest
    out.append(head.encode())
    # The pieces go out one after another: joining them would copy the payload again.
    return tuple(out)


def _swap_message(message: Any, inline: list[str]) -> Any:
    """`message` with its inline payloads replaced by tokens (a copy, when there are any)."""
    if type(message) is not dict:
        return message
    content = message.get("content")
    if type(content) is not list:
        return message
    parts = [_swap_part(part, inline) for part in content]
    if all(new is old for new, old in zip(parts, content, strict=True)):
        return message
    return {**message, "content": parts}


def _swap_part(part: Any, inline: list[str]) -> Any:
    if type(part) is not dict:
        return part
    kind = part.get("type")
    if kind == "image_url":
        field, key = "image_url", "url"
    elif kind == "file":
        field, key = "file", "file_data"
    elif kind == "input_audio":
        field, key = "input_audio", "data"
    else:
        return part
    inner = part.get(field)
    if type(inner) is not dict:
        return part
    value = inner.get(key)
    if type(value) is not str or len(value) < INLINE_MIN or not _splices(value):
        return part
    inline.append(value)
    return {**part, field: {**inner, key: f"{_TOKEN}{len(inline) - 1}"}}


def _splices(value: str) -> bool:
    """Whether `value` is a `data:` URL or base64 whose payload JSON writes as it is. Parts
    check their payload is base64 when they are made (a full check here would cost as much as
    escaping); these cheap checks stand guard: ASCII (a flag of the string), no quote or
    backslash (searched at memory speed), a short header, base64 at the end."""
    if not value.isascii() or '"' in value or "\\" in value:
        return False
    if value.startswith("data:"):
        comma = value.find(",")
        if comma < 0 or comma > 255:
            return False
    return _BASE64.issuperset(value[-64:])


class EncodedBodies:
    """The last body each task encoded, for the attempts that send it again; and the payloads
    already written as bytes."""

    __slots__ = ("_known", "_payloads")

    def __init__(self) -> None:
        self._payloads = PayloadBytes()
        self._known: weakref.WeakKeyDictionary[
            asyncio.Task[Any], tuple[Sequence[Message], GenerateParams, dict[str, Any], Body]
        ] = weakref.WeakKeyDictionary()

    def encode(
        self, messages: Sequence[Message], params: GenerateParams, body: dict[str, Any]
    ) -> Body:
        """`body` (built from `messages` and `params`) as JSON: the task's previous attempt's
        when it sends the same."""
        from_parts = "messages" not in params.extra
        task = asyncio.current_task()
        if task is None:
            return encode_body(body, from_parts=from_parts, payloads=self._payloads)
        known = self._known.get(task)
        if known is not None and known[0] is messages and known[1] is params and known[2] == body:
            return known[3]
        data = encode_body(body, from_parts=from_parts, payloads=self._payloads)
        self._known[task] = (messages, params, body, data)
        return data

    def done(self) -> None:
        """Forget the running task's body: its item succeeded or failed for good."""
        task = asyncio.current_task()
        if task is not None:
            self._known.pop(task, None)
