"""Request bodies encoded once per item, not once per attempt.

A chat carrying a 1 MB image is 1.3 MB of JSON; the request tier may send it several times (its
retries, a stream's retry before the first delta). `EncodedBodies.encode` keeps the bytes of the
body each item last sent, keyed by the asyncio task the item runs in (the tier runs each item of
a batch in a task of its own, and a stream in its caller's), and hands them back while the next
attempt would send the same body: the same messages and params objects, and an equal body dict.
The equality test is cheap: an attempt's dict holds the very string objects the parts hold (a
`data:` URL is built once, when the part is), and Python compares a string with itself by
identity.

Entries go with their task (weakly held), and are dropped as soon as an attempt succeeds or fails
for good, so a long-lived task keeps no image it will not send again.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Sequence
from typing import Any

from jib.messages import Message
from jib.params import GenerateParams

__all__ = ["EncodedBodies"]


class EncodedBodies:
    """The last body each task encoded, for the attempts that send it again."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[
            asyncio.Task[Any], tuple[Sequence[Message], GenerateParams, dict[str, Any], bytes]
        ] = weakref.WeakKeyDictionary()

    def encode(
        self, messages: Sequence[Message], params: GenerateParams, body: dict[str, Any]
    ) -> bytes:
        """`body` as JSON bytes: those of the task's previous attempt when it sends the same."""
        task = asyncio.current_task()
        if task is None:
            return json.dumps(body).encode()
        known = self._known.get(task)
        if known is not None and known[0] is messages and known[1] is params and known[2] == body:
            return known[3]
        data = json.dumps(body).encode()
        self._known[task] = (messages, params, body, data)
        return data

    def done(self) -> None:
        """Forget the running task's body: its item succeeded or failed for good."""
        task = asyncio.current_task()
        if task is not None:
            self._known.pop(task, None)
