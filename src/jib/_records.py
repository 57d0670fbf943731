"""The validated JSON form of `Chat` and `Completion` records, and reading it from data.

Loaded lazily by `jib.chat` the first time a record is serialized or loaded, so `import jib`
does not pay for building these models. `record_model` reads one record's data and says what is
wrong with it without quoting the values (they are data); `json_lines` and `numbered` feed the
batch loaders one item at a time, so one bad item is one problem, not a failed batch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jib._json import loads as load_json
from jib.messages import Role, StopReason
from jib.params import GenerateParams

RECORD_FORMAT_VERSION = 1
"""Version of the JSON form of records; bump it (and teach loading the old form) on a change."""


class MessageModel(BaseModel):
    """A stored message."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class UsageModel(BaseModel):
    """Stored token counts."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class ErrorModel(BaseModel):
    """A stored error: its type name and message."""

    type: str
    message: str


class RecordModel(BaseModel):
    """Fields common to chats and completions."""

    schema_version: int = Field(default=RECORD_FORMAT_VERSION, ge=1)
    id: str
    timestamp: datetime
    generator_id: str | None = None
    params: GenerateParams | None = None
    stop_reason: StopReason = "unknown"
    usage: UsageModel | None = None
    failed: bool = False
    error: ErrorModel | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    attempts: int | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > RECORD_FORMAT_VERSION:
            raise ValueError(
                f"this record has schema_version {version}, written by a newer jib; this jib "
                f"reads up to {RECORD_FORMAT_VERSION}: upgrade jib to load it"
            )
        return version


class ChatModel(RecordModel):
    """A stored chat."""

    kind: Literal["chat"] = "chat"
    messages: list[MessageModel] = Field(default_factory=list)
    generated: list[MessageModel] = Field(default_factory=list)


class CompletionModel(RecordModel):
    """A stored completion."""

    kind: Literal["completion"] = "completion"
    text: str = ""
    generated: str = ""


# -- reading a record that may be broken ---------------------------------------------------------

AnyRecordModel = ChatModel | CompletionModel
"""A stored chat or completion."""

_MODELS: dict[str, type[AnyRecordModel]] = {"chat": ChatModel, "completion": CompletionModel}
_SHOWN_PROBLEMS = 2


class RecordProblem(ValueError):
    """Why a record's data cannot be read as a chat or completion (the reason names fields and
    what was expected, never the values)."""


def record_model(data: Any, kind: str | None = None) -> tuple[AnyRecordModel, list[str]]:
    """The validated model of a record dict, and the names of the stored params left out of it.

    Params are not part of what a record *is*: those that stopped being valid (`nan` before
    floats had to be finite, a field a newer jib removed) are dropped rather than making the
    whole record unreadable. `kind` is the kind expected (`None`: either, by the data's `kind`).

    Raises:
        RecordProblem: the data is not a record of that kind (the message says why).
    """
    if not isinstance(data, dict):
        raise RecordProblem(f"it is a JSON {_json_type(data)}, not an object")
    found = data.get("kind", "chat")
    if found not in _MODELS:
        raise RecordProblem("its kind is neither 'chat' nor 'completion'")
    if kind is not None and found != kind:
        raise RecordProblem(f"it is a {found}, not a {kind}")
    model = _MODELS[found]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        invalid = _invalid_params(data, exc)
        if not invalid:
            raise RecordProblem(describe_errors(exc)) from None
    kept = {k: v for k, v in data["params"].items() if k not in invalid}
    try:
        return model.model_validate({**data, "params": kept}), invalid
    except ValidationError as exc:  # pragma: no cover - only the params were wrong above
        raise RecordProblem(describe_errors(exc)) from None


def _invalid_params(data: dict[str, Any], exc: ValidationError) -> list[str]:
    """The stored params `exc` refuses, when nothing else is wrong (else an empty list)."""
    params = data.get("params")
    if not isinstance(params, dict):
        return []
    invalid: set[str] = set()
    for error in exc.errors():
        location = error["loc"]
        if len(location) < 2 or location[0] != "params" or location[1] not in params:
            return []
        invalid.add(str(location[1]))
    return sorted(invalid)


def describe_errors(exc: ValidationError) -> str:
    """What a validation error says, by field and without the values (they are data)."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = [
        f"{'.'.join(str(part) for part in error['loc']) or 'the record'}: {error['msg']}"
        for error in errors[:_SHOWN_PROBLEMS]
    ]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


_PLAIN_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


def record_label(data: Any, *, stored: bool = False, position: str | None = None) -> str:
    """How messages name a record: `stored chat 0a1b…`, `chat 0a1b… (line 3)`, `record (line 3)`.

    An id that is not a plain token is shown quoted and cut (it is data, like the rest).
    """
    found = data.get("kind", "chat") if isinstance(data, dict) else None
    label = ("stored " if stored else "") + (found if found in _MODELS else "record")
    record_id = record_id_of(data)
    if record_id:
        label += " " + (record_id if _PLAIN_ID.fullmatch(record_id) else repr(record_id[:64]))
    return f"{label} ({position})" if position else label


def record_id_of(data: Any) -> str | None:
    """The id of a record's data, when it has one that is text."""
    record_id = data.get("id") if isinstance(data, dict) else None
    return record_id if isinstance(record_id, str) else None


# -- batches: where each item is, and JSON Lines read one line at a time -----------------------

JsonLinesSource = str | bytes | os.PathLike[str] | Iterable[str] | Iterable[bytes]
"""JSON Lines: their text, a file's path, or lines (an open file, a list of strings)."""


def numbered(items: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """Each item with its place in the batch (`item 1`, `item 2`, …)."""
    for number, data in enumerate(items, start=1):
        yield f"item {number}", data


def json_lines(source: JsonLinesSource) -> Iterator[tuple[str, Any]]:
    """Each non-blank line's place (`line 3`) and value, or a `RecordProblem` if not JSON."""
    if isinstance(source, (str, bytes)):
        yield from _parsed(source.splitlines())
    elif isinstance(source, os.PathLike):
        with open(source, "rb") as handle:  # bytes: a line that is not UTF-8 is one bad line
            yield from _parsed(handle)
    else:
        yield from _parsed(source)


def _parsed(lines: Iterable[str | bytes]) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", load_json(line, what="it", error=RecordProblem)
        except RecordProblem as too_deep:
            yield f"line {number}", too_deep
        except ValueError as exc:  # not JSON, or bytes that are not UTF-8
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            yield f"line {number}", RecordProblem(f"it is not JSON ({problem})")
