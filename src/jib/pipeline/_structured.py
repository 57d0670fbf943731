"""Structured output (`ChatPipeline.structured`): an answer validated into a pydantic model.

The pipeline asks for JSON through `response_format` (the model's JSON schema) and validates
each final answer. An answer that does not validate is sent back to the model with what was
wrong (a `user` message), up to `max_corrections` times; then the chat fails with a
`StructuredOutputError` that shows the last answer (secrets redacted, cut short).

A model that wraps its JSON in a Markdown fence (```json … ```) is forgiven: the fence is
taken off before validating, since the JSON inside is what was asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from jib._secrets import redact
from jib.errors import StructuredOutputError
from jib.messages import Message

__all__ = ["Invalid", "Structured"]

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```\s*\Z", re.DOTALL)
_SHOWN = 300
"""Characters of the last answer a `StructuredOutputError` shows."""
_MAX_PROBLEMS = 10


class Invalid(Exception):
    """An answer that does not validate; `problems` says why, one line each."""

    def __init__(self, answer: str, problems: tuple[str, ...]) -> None:
        self.answer = answer
        self.problems = problems
        super().__init__("; ".join(problems))


class Structured:
    """What `.structured(Model)` asks for: the model to validate into, and how often to ask
    again."""

    __slots__ = ("max_corrections", "model")

    def __init__(self, model: type[BaseModel], max_corrections: int) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"structured() takes a pydantic model class, not {model!r}")
        if isinstance(max_corrections, bool) or not isinstance(max_corrections, int):
            raise TypeError(f"max_corrections must be an int, not {max_corrections!r}")
        if max_corrections < 0:
            raise ValueError(f"max_corrections must be >= 0, not {max_corrections}")
        self.model = model
        self.max_corrections = max_corrections

    def validate(self, message: Message, refusal: str | None = None) -> BaseModel:
        """The answer of `message` validated as the model.

        Raises:
            Invalid: it is not JSON of the model's shape (or the model refused).
        """
        text = message.content
        if refusal and not text.strip():
            raise Invalid(text, (f"the model refused: {refusal}",))
        fenced = _FENCE.match(text)
        try:
            return self.model.model_validate_json(fenced.group(1) if fenced else text)
        except ValidationError as exc:
            raise Invalid(text, _problems(exc)) from None

    def correction(self, invalid: Invalid) -> Message:
        """The message asking the model to answer again, saying what was wrong."""
        problems = "\n".join(f"- {line}" for line in invalid.problems)
        return Message(
            "user",
            f"Your answer is not valid JSON for {self.model.__name__}:\n{problems}\n"
            "Answer again with only the JSON, corrected.",
        )

    def failure(self, invalid: Invalid, secrets: Iterable[str | None]) -> StructuredOutputError:
        """The error of a chat whose last answer did not validate either."""
        shown = redact(invalid.answer, secrets)
        if len(shown) > _SHOWN:
            shown = shown[: _SHOWN - 3] + "..."
        name = self.model.__name__
        asked = self.max_corrections + 1
        return StructuredOutputError(
            f"no answer validated as {name} ({asked} answer{'s' if asked != 1 else ''}, "
            f"max_corrections={self.max_corrections}); the last: {shown!r}: "
            + "; ".join(invalid.problems),
            name,
            shown,
            invalid.problems,
        )


def _problems(exc: ValidationError) -> tuple[str, ...]:
    lines = []
    for error in exc.errors(include_url=False)[:_MAX_PROBLEMS]:
        where = ".".join(str(part) for part in error["loc"])
        message: Any = error["msg"]
        lines.append(f"{where}: {message}" if where else str(message))
    more = exc.error_count() - _MAX_PROBLEMS
    if more > 0:
        lines.append(f"and {more} more")
    return tuple(lines)
