"""Streamed answers (`response.stream`): server-sent events or newline-delimited JSON, each
piece's text found by `response.delta_path`.

SSE: the `data:` lines of an event (several are joined by line breaks) are its piece, sent when
a blank line ends the event; `[DONE]` ends the stream; comments, `event:`, `id:` and `retry:`
lines are skipped. NDJSON: each non-blank line is a piece. With `delta_path`, a piece is JSON and
its text is what the path matches (nothing matched: no text, as in a chunk that only says the
answer is over); without it, a piece that is a JSON string is that string, any other its text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from jib._wire.models import too_large
from jib.errors import MalformedResponseError
from jib.generator.http._budget import RenderLimits
from jib.generator.http.spec import HTTPSpec
from jib.generator.http.transforms import CompiledJsonPath, NotJSONError, match_text

__all__ = ["StreamReader"]


class StreamReader:
    """What a streamed answer said so far: feed it lines (`feed`), read the deltas back.

    Attributes:
        parts: the text pieces, in order.
        done: an SSE `[DONE]` was read.
        watch: called with each piece (its raw payload) while it returns `None`; its first
            other answer is kept as `watched` (the generator looks for the session id so).
    """

    def __init__(self, spec: HTTPSpec, limit: int, label: str, limits: RenderLimits) -> None:
        self.kind = spec.response.stream
        self.path: CompiledJsonPath | None = (
            None
            if spec.response.delta_path is None
            else spec._get("jsonpath", spec.response.delta_path)
        )
        self.limit = limit
        self.label = label
        self.limits = limits
        self.parts: list[str] = []
        self.kept = 0
        self.done = False
        self._event: list[str] = []
        self.watch: Callable[[str], str | None] | None = None
        self.watched: str | None = None

    def feed(self, line: bytes) -> Iterator[str]:
        """The text deltas `line` completes (none, or one).

        Raises:
            MalformedResponseError: a piece is not the JSON `delta_path` reads.
            ProcessingError: the answer grew past `limit` characters.
            BudgetExceededError: reading a piece ran out of its budget.
        """
        text = line.decode("utf-8", "replace").rstrip("\r")
        if self.kind == "ndjson":
            if text.strip():
                yield from self._piece(text)
            return
        if not text:
            yield from self.flush()
        elif text.startswith("data:"):
            self._event.append(text[5:].removeprefix(" "))

    def flush(self) -> Iterator[str]:
        """End the event being read (the stream ended, or a blank line came)."""
        if not self._event:
            return
        payload, self._event = "\n".join(self._event), []
        if payload.strip() == "[DONE]":
            self.done = True
            return
        yield from self._piece(payload)

    def _piece(self, payload: str) -> Iterator[str]:
        if self.watch is not None and self.watched is None:
            self.watched = self.watch(payload)
        text = self._text_of(payload)
        if text:
            self.kept += len(text)
            if self.kept > self.limit:
                raise too_large(self.limit)
            self.parts.append(text)
            yield text

    def _text_of(self, payload: str) -> str:
        if self.path is None:
            if payload.startswith('"'):
                try:
                    value = json.loads(payload)
                except ValueError:
                    return payload
                if isinstance(value, str):
                    return value
            return payload
        try:
            values = self.path.find_in(payload, self.limits)
        except NotJSONError as exc:
            raise MalformedResponseError(
                f"a streamed piece is not the JSON response.delta_path reads ({exc})",
                provider=self.label,
            ) from None
        values = [value for value in values if value is not None]
        if not values:
            return ""
        return match_text(values[0] if len(values) == 1 else values)

    @property
    def answer(self) -> str:
        """The whole answer so far."""
        return "".join(self.parts)
