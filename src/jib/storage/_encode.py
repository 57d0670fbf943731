"""Encoding column values for the database driver, each once, without SQLAlchemy's per-row work.

The counterpart of `jib.storage._decode`. Rows go straight to the driver (see
`jib.storage._insert`), so every value is made here in the form the driver takes:

- JSON columns as JSON text, written by `orjson` (a fraction of the `json` module's time). It
  reads back as what `json.dumps` wrote before (SQLAlchemy's JSON type), except where the two
  differ, which goes to `json.dumps` as before: what orjson refuses (a lone surrogate, a key
  that is not a string, an integer beyond 64 bits, a subclass of a JSON type, a value with no
  JSON form) and a float that is not finite (orjson writes `null`, `json.dumps` `NaN`). So such
  a value is stored as before, lone surrogates escaped, or refused with `json.dumps`'s message.
  One difference is kept: orjson writes a `uuid.UUID` (as its text) and an `enum.Enum` member
  (as its value), which `json.dumps` refused; `Chat.to_json()` writes them the same way. The
  text is UTF-8, not ASCII-escaped: the same JSON to every reader.
- Text columns with lone surrogates escaped (see `jib._unicode`).
- Flags as 0 or 1 for SQLite (which keeps them so), `True`/`False` for PostgreSQL.
- Timestamps as SQLite keeps them (UTC text, `YYYY-MM-DD HH:MM:SS.ffffff`, what SQLAlchemy's
  `DateTime` writes and compares with) or, for PostgreSQL, timezone-aware in UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Float, String, Text
from sqlalchemy import Column as SQLColumn

from jib._unicode import escape_surrogates
from jib.storage._schema import JSONDocument, UTCDateTime

__all__ = [
    "ColumnEncoder",
    "UnencodableValue",
    "ValueEncoders",
    "column_encoders",
    "encode_rows",
    "json_text",
    "real",
    "text",
]

_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
"""Types `json.dumps` writes differently from orjson (or not at all) go to `json.dumps`."""


class UnencodableValue(ValueError):
    """A value has no JSON form; the message is `json.dumps`'s (the cause is its error)."""


def json_text(value: Any) -> str:
    """`value` as JSON text, as `json.dumps(value)` reads back, lone surrogates escaped.

    Raises:
        UnencodableValue: `value` (or something in it) has no JSON form.
    """
    if type(value) is dict and not value:
        return "{}"  # metadata and extra, mostly
    try:
        written = orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return _json_dumps(value)
    if b"null" in written and _holds_non_finite(value):
        return _json_dumps(value)
    return written.decode()


def _json_dumps(value: Any) -> str:
    """What SQLAlchemy's JSON type wrote before: `json.dumps`, lone surrogates escaped."""
    try:
        json.dumps(value)  # first: a cycle is refused here, not walked for ever below
    except (TypeError, ValueError, RecursionError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise UnencodableValue(lines[0] if lines else type(exc).__name__) from exc
    return json.dumps(escape_surrogates(value))


def _holds_non_finite(value: Any) -> bool:
    # Only asked when orjson wrote a `null`: a loop, like `jib._unicode`'s walk.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def text(value: Any) -> Any:
    """A text column's value, lone surrogates escaped (ASCII text is returned at once)."""
    if isinstance(value, str) and not value.isascii():
        return escape_surrogates(value)
    return value


def real(value: Any) -> float | None:
    """A floating-point column's value as a float (SQLite would keep an int as an int).

    Raises:
        UnencodableValue: it is not a number.
    """
    if value is None or type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise UnencodableValue(str(exc)) from exc


def _flag(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _as_is(value: Any) -> Any:
    return value


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json_text(value)


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    # The first 26 characters leave out the `+00:00` (faster than dropping the zone first).
    return value.isoformat(" ", "microseconds")[:26]


def _postgres_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


Column = tuple[Any, ...]
"""The values of one column, one per row."""

ColumnEncoder = Callable[[Column], Column]
"""Encodes the values of one column (`None` included) for the driver."""


def encode_rows(
    rows: Sequence[Sequence[Any]],
    encoders: Sequence[tuple[int, ColumnEncoder]],
    constants: Mapping[int, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """`rows` with the columns that `encoders` name (by index) encoded, and each column of
    `constants` set to its value in every row.

    A column at a time: the work per value is then the encoder's alone, and a text column that
    is all ASCII (as most are) is checked in one pass.
    """
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))
    for index, encode in encoders:
        columns[index] = encode(columns[index])
    for index, value in (constants or {}).items():
        columns[index] = (value,) * len(rows)
    return list(zip(*columns, strict=True))


def column_encoders(
    columns: Sequence[SQLColumn[Any]], backend: str
) -> list[tuple[int, ColumnEncoder]]:
    """How each of `columns` that needs it is encoded for `backend` (`"sqlite"` or
    `"postgresql"`), by its index; the values of the rest go to the driver as they are."""
    found: list[tuple[int, ColumnEncoder]] = []
    for index, column in enumerate(columns):
        encoder = _encoder(column.type, backend)
        if encoder is not None:
            found.append((index, encoder))
    return found


def _each(encode: Callable[[Any], Any]) -> ColumnEncoder:
    def encode_column(values: Column) -> Column:
        return tuple(map(encode, values))

    return encode_column


def _texts(values: Column) -> Column:
    try:
        if "".join(filter(None, values)).isascii():
            return values
    except TypeError:  # not all text: each value on its own
        pass
    return tuple(map(text, values))


_JSON_TEXTS = _each(json_text)
_JSON_TEXTS_OR_NULL = _each(_json_or_null)
_SQLITE_TIMES = _each(_sqlite_time)
_POSTGRES_TIMES = _each(_postgres_time)
_FLAGS = _each(_flag)
_REALS = _each(real)


def _encoder(kind: Any, backend: str) -> ColumnEncoder | None:
    if isinstance(kind, (JSON, JSONDocument)):
        # `None` is SQL NULL in a column that says so, else JSON `null` (as SQLAlchemy wrote it).
        return _JSON_TEXTS_OR_NULL if kind.none_as_null else _JSON_TEXTS
    if isinstance(kind, UTCDateTime):
        return _SQLITE_TIMES if backend == "sqlite" else _POSTGRES_TIMES
    if isinstance(kind, Boolean):
        # SQLite keeps a flag as 0 or 1 either way; its driver binds an int faster than a bool.
        return _FLAGS if backend == "sqlite" else None
    if isinstance(kind, Float):
        return _REALS
    if isinstance(kind, (String, Text)):
        return _texts
    return None


class ValueEncoders:
    """One value at a time, what `column_encoders` does a column at a time, for the columns
    whose encoding depends on `backend` (`"sqlite"` or `"postgresql"`): times and flags. For
    rows made already encoded (see `jib.storage._rows.RowMaker`); JSON, text and real columns
    are the same for both (`json_text`, `text`, `real`)."""

    __slots__ = ("flag", "time")

    def __init__(self, backend: str) -> None:
        self.time: Callable[[datetime], Any] = (
            _sqlite_time if backend == "sqlite" else _postgres_time
        )
        self.flag: Callable[[Any], Any] = _flag if backend == "sqlite" else _as_is
