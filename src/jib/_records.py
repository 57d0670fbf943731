"""The validated JSON form of `Chat` and `Completion` records, and reading it from data.

Loaded lazily by `jib.chat` the first time a record is loaded or written as JSON text, so
`import jib` (and a run, which stores records as dicts) does not pay for building these
models. `record_model` reads one record's data and says what is wrong with it without quoting
the values (they are data); `json_lines` and `numbered` feed the batch loaders one item at a
time, so one bad item is one problem, not a failed batch.

Record format versions: 1 holds text messages; 2 adds content parts, tool calls,
`tool_call_id` and `cache_control` on messages, the cache and reasoning token counts and the
chat's `output`. A record is written at the oldest version that holds it, so a text-only record
is what version 1 wrote, character for character, and a jib that reads only version 1 says a
record using more was written by a newer jib instead of misreading it.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from jib import _part_data
from jib._json import loads as load_json
from jib._record_format import RECORD_FORMAT_VERSION
from jib.content import ContentPart, part_from_dict
from jib.messages import Message, Role, StopReason
from jib.params import GenerateParams
from jib.tools import ToolCall

_PARTS_CACHE = "parts"
"""The validation context key of a batch's cache of parts (see `_part`)."""


class PartsCache:
    """The parts a batch loaded, by their stored shape: the most recently used, up to a budget
    of characters (so a long streamed read does not keep every part it has seen)."""

    def __init__(self, budget: int = 64 * 1024 * 1024) -> None:
        self._parts: OrderedDict[Any, tuple[ContentPart, int]] = OrderedDict()
        self._budget = budget
        self._size = 0

    def get(self, key: Any) -> ContentPart | None:
        """The part stored under `key`, if kept."""
        found = self._parts.get(key)
        if found is None:
            return None
        self._parts.move_to_end(key)
        return found[0]

    def put(self, key: Any, part: ContentPart, size: int) -> None:
        """Keep `part` under `key` (`size`: its characters), dropping the least recently used
        parts beyond the budget."""
        self._parts[key] = (part, size)
        self._size += size
        while self._size > self._budget and len(self._parts) > 1:
            _, (_, dropped) = self._parts.popitem(last=False)
            self._size -= dropped


def _is_none(value: Any) -> bool:
    return value is None


def _is_zero(value: Any) -> bool:
    return bool(value == 0)


def _frozen(value: Any) -> tuple[Any, int]:
    """A hashable form of JSON data (types kept apart: `1` and `true` differ), and its size in
    characters of text."""
    if isinstance(value, dict):
        items = sorted((str(key), _frozen(item)) for key, item in value.items())
        return (dict, *((key, item[0]) for key, item in items)), sum(i[1] for _, i in items)
    if isinstance(value, list):
        frozen = [_frozen(item) for item in value]
        return (list, *(item[0] for item in frozen)), sum(item[1] for item in frozen)
    hash(value)  # TypeError for what is not JSON data
    return (type(value), value), len(value) if isinstance(value, str) else 1


def _part(value: Any, info: ValidationInfo) -> ContentPart:
    """A content part from its stored shape.

    Loading a batch passes a cache in the validation context: equal stored parts (a thousand
    chats sending one image) then load as one frozen part, checked and held once.
    """
    cache = info.context.get(_PARTS_CACHE) if isinstance(info.context, dict) else None
    key: tuple[Any, int] | None = None
    if isinstance(cache, PartsCache) and isinstance(value, dict):
        try:
            key = _frozen(value)
        except TypeError:  # a value that is not JSON data: no caching
            key = None
        found = cache.get(key[0]) if key is not None else None
        if found is not None:
            return found
    try:
        part = part_from_dict(value)
    except (TypeError, ValueError):
        raise ValueError(_part_problem(value)) from None
    if key is not None and isinstance(cache, PartsCache):
        cache.put(key[0], part, key[1])
    return part


def _part_problem(value: Any) -> str:
    """Why `value` is not a part, without quoting it."""
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return "a content part must be an object"
    if not isinstance(kind, str) or kind not in {"text", "image_url", "input_audio", "file"}:
        return "a content part's type must be text, image_url, input_audio or file"
    slots = [slot for slot in _slots(value.get(kind)) if isinstance(slot, str)]
    if any(slot.startswith(_part_data.FILE) for slot in slots):
        return (
            f"this {kind} part refers to a file beside an export: load the export with "
            "Chat.from_jsonl(path)"
        )
    if any(slot.startswith(_part_data.BLOB) for slot in slots):
        return f"this {kind} part refers to data kept in a store: load it from the store"
    return f"this {kind} part lacks a field, or its URL or data is not valid"


def _slots(inner: Any) -> list[Any]:
    return list(inner.values()) if isinstance(inner, dict) else []


def _tool_call(value: Any) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    try:
        return ToolCall.from_dict(value)
    except (TypeError, ValueError, AttributeError):
        raise ValueError("a tool call needs an object with function.name") from None


def _content_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "parts" if isinstance(value, (list, tuple)) else None


Part = Annotated[
    ContentPart,
    PlainValidator(_part),
    PlainSerializer(lambda part: part.to_dict(), return_type=dict[str, Any]),
]
"""A content part, stored in its OpenAI shape."""

Content = Annotated[
    Union[Annotated[str, Tag("text")], Annotated[list[Part], Tag("parts")]],  # noqa: UP007
    Discriminator(
        _content_kind,
        custom_error_type="content",
        custom_error_message="should be text or a list of content parts",
    ),
]
"""A message's content: text, or its parts."""

StoredToolCall = Annotated[
    ToolCall,
    PlainValidator(_tool_call),
    PlainSerializer(lambda call: call.to_dict(), return_type=dict[str, Any]),
]
"""A tool call, stored in its OpenAI shape."""


class MessageModel(BaseModel):
    """A stored message: what `Message.to_dict` writes (the optional keys only when set)."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: Content
    tool_calls: list[StoredToolCall] | None = Field(default=None, exclude_if=_is_none)
    tool_call_id: str | None = Field(default=None, exclude_if=_is_none)
    cache_control: dict[str, Any] | None = Field(default=None, exclude_if=_is_none)

    def to_message(self) -> Message:
        """The message this stores."""
        return Message(
            self.role,
            self.content,
            tool_calls=self.tool_calls,
            tool_call_id=self.tool_call_id,
            cache_control=self.cache_control,
        )


class UsageModel(BaseModel):
    """Stored token counts (the cache and reasoning counts only when not zero)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = Field(default=0, ge=0, exclude_if=_is_zero)
    cache_write_tokens: int = Field(default=0, ge=0, exclude_if=_is_zero)
    reasoning_tokens: int = Field(default=0, ge=0, exclude_if=_is_zero)


class ErrorModel(BaseModel):
    """A stored error: its type name and message."""

    type: str
    message: str


_FIRST_PARAMS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "timeout",
        "extra",
    }
)
"""The params of the first record format, written even when unset (as that format did)."""


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

    @field_serializer("params", mode="wrap")
    def _params_as_written(self, params: Any, handler: SerializerFunctionWrapHandler) -> Any:
        # Params added after the first format (tools, response_format, ...) are written only
        # when set, so a record that uses none of them reads as it always did.
        data = handler(params)
        if isinstance(data, dict):
            for name in [n for n, v in data.items() if v is None and n not in _FIRST_PARAMS]:
                del data[name]
        return data


class ChatModel(RecordModel):
    """A stored chat."""

    kind: Literal["chat"] = "chat"
    messages: list[MessageModel] = Field(default_factory=list)
    generated: list[MessageModel] = Field(default_factory=list)
    output: Any = Field(default=None, exclude_if=_is_none)


class CompletionModel(RecordModel):
    """A stored completion."""

    kind: Literal["completion"] = "completion"
    text: str = ""
    generated: str = ""


def parts_cache() -> dict[str, Any]:
    """A validation context that loads the equal parts of a batch's records as one part."""
    return {_PARTS_CACHE: PartsCache()}


# -- reading a record that may be broken ---------------------------------------------------------

AnyRecordModel = ChatModel | CompletionModel
"""A stored chat or completion."""

_MODELS: dict[str, type[AnyRecordModel]] = {"chat": ChatModel, "completion": CompletionModel}
_SHOWN_PROBLEMS = 2


class RecordProblem(ValueError):
    """Why a record's data cannot be read as a chat or completion (the reason names fields and
    what was expected, never the values)."""


def record_model(
    data: Any, kind: str | None = None, context: dict[str, Any] | None = None
) -> tuple[AnyRecordModel, list[str]]:
    """The validated model of a record dict, and the names of the stored params left out of it.

    Params are not part of what a record *is*: those that stopped being valid (`nan` before
    floats had to be finite, a field a newer jib removed) are dropped rather than making the
    whole record unreadable. `kind` is the kind expected (`None`: either, by the data's `kind`);
    `context` the validation context (`parts_cache()` for a batch).

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
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        invalid = _invalid_params(data, exc)
        if not invalid:
            raise RecordProblem(describe_errors(exc)) from None
    kept = {k: v for k, v in data["params"].items() if k not in invalid}
    try:
        return model.model_validate({**data, "params": kept}, context=context), invalid
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


def with_files(items: Iterable[tuple[str, Any]], base: Path | None) -> Iterator[tuple[str, Any]]:
    """`items` (from `json_lines`) with the `jib-file:` references of their parts read back into
    inline data, from files beside the export only (see `jib._part_data.FileReader`); `base` is
    the export's folder (`None`: the lines were not read from a file). An item whose reference
    cannot be followed becomes a `RecordProblem`."""
    reader = _part_data.FileReader(base)
    for position, data in items:
        if not isinstance(data, dict) or data.get("kind", "chat") != "chat":
            yield position, data
            continue
        try:
            swapped = {
                name: _part_data.swap_data(data[name], reader)
                for name in ("messages", "generated")
                if name in data
            }
            yield position, {**data, **swapped}
        except _part_data.PartDataError as exc:
            yield position, RecordProblem(str(exc))


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
