"""Reading rows without trusting them: each row decoded on its own, so a broken row is one
unreadable record, not a failed query.

A store is shared data: SQLite keeps any value in any column, and anyone with write access may
leave there what no jib wrote (text that is not JSON in a JSON column, a word in a timestamp).
SQLAlchemy decodes a column while it fetches, so one such row would end the whole result. Rows
are therefore selected with no type processing (`RAW_COLUMNS`) and decoded here one at a time,
by the column types `jib.storage._schema` declares: JSON parsed (SQLite keeps it as text;
PostgreSQL's driver hands it over parsed), timestamps read as UTC, numbers and flags checked.
A value that does not decode makes an `UnreadableRecordError` naming the record and the column.
Params are the exception: params that cannot be read are dropped (a `GeneratorWarning` says so),
as params that stopped being valid are (see `jib.chat`), since they are not what a record *is*.

`readable_condition` states the same column rules in SQL, so summaries computed by the database
(`jib runs`) can count unreadable rows without reading every record. It sees what the database
can tell (a column's type, whether JSON parses and is an object, array or text, the record's
kind and version); a record can still prove unreadable when loaded (a message with an unknown
role, say), and is then skipped there.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Label,
    String,
    Text,
    and_,
    case,
    func,
    literal,
    or_,
    type_coerce,
)
from sqlalchemy.types import NullType

from jib._json import loads as load_json
from jib.chat import UnreadableRecordError
from jib.errors import GeneratorWarning
from jib.storage._schema import JSONDocument, UTCDateTime, records

__all__ = ["RAW_COLUMNS", "decode_row", "readable_condition", "row_label"]

RAW_COLUMNS: tuple[Label[Any], ...] = tuple(
    type_coerce(column, NullType()).label(column.name) for column in records.c
)
"""Every column of `jib_records`, as the database driver returns it (see the module docs)."""

_SHOWN_NAMES = {"meta": "metadata", "input": "input (messages or text)"}


def row_label(raw: Mapping[str, Any]) -> str:
    """How messages name a stored row: `stored chat 0a1b…`, or by its row number if need be."""
    from jib._records import record_label

    record_id, kind = raw.get("id"), raw.get("kind")
    if isinstance(record_id, str) and record_id:
        return record_label({"id": record_id, "kind": kind}, stored=True)
    return f"stored record (row {raw.get('seq')!r:.20})"


def decode_row(raw: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """The row `raw` (from `RAW_COLUMNS`) with every column decoded as the schema declares.

    Raises:
        UnreadableRecordError: a column holds what its type cannot be (the message names it).
    """
    row: dict[str, Any] = {}
    for name, nullable, decode in _DECODERS:
        value = raw[name]
        if value is None:
            if not nullable:
                raise UnreadableRecordError(row_label(raw), f"its {name} column is empty", _id(raw))
            row[name] = None
            continue
        try:
            row[name] = decode(value, backend)
        except (TypeError, ValueError, RecursionError) as exc:
            if name == "params":
                warnings.warn(
                    f"{row_label(raw)}: its stored params column {exc}; the params were dropped",
                    GeneratorWarning,
                    stacklevel=4,
                )
                row[name] = None
                continue
            shown = _SHOWN_NAMES.get(name, name)
            raise UnreadableRecordError(
                row_label(raw), f"its {shown} column {exc}", _id(raw)
            ) from None
    return row


def _id(raw: Mapping[str, Any]) -> str | None:
    record_id = raw.get("id")
    return record_id if isinstance(record_id, str) else None


Decoder = Callable[[Any, str], Any]
"""Decodes a column's non-null value (and the backend's name); `TypeError`/`ValueError` say
what is wrong with it."""


def _json(value: Any, backend: str) -> Any:
    if backend != "sqlite" or not isinstance(value, (str, bytes)):
        # PostgreSQL's driver parsed it; SQLite may hold a number where the text looked like one.
        return value
    try:
        return load_json(value, what="the value", error=ValueError)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON ({exc.msg} at character {exc.pos})") from None


def _timestamp(value: Any, _backend: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a time") from None
    if not isinstance(value, datetime):
        raise TypeError("is not a time")
    if value.tzinfo is None:  # SQLite keeps UTC without a zone
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _flag(value: Any, _backend: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise TypeError("is not true or false")


def _whole(value: Any, _backend: str) -> int:
    if type(value) is int:
        return value
    raise TypeError("is not a whole number")


def _number(value: Any, _backend: str) -> float:
    if type(value) in (int, float):
        return float(value)
    raise TypeError("is not a number")


def _text(value: Any, _backend: str) -> str:
    if type(value) is str:
        return value
    raise TypeError("is not text")


def _decoder(kind: Any) -> Decoder:
    """How a column of type `kind` is decoded."""
    for declared, decoder in (
        ((JSON, JSONDocument), _json),
        (UTCDateTime, _timestamp),
        (Boolean, _flag),
        (Integer, _whole),
        (Float, _number),
        (String, _text),
    ):
        if isinstance(kind, declared):
            return decoder
    raise TypeError(f"no decoder for a column of type {type(kind).__name__}")  # pragma: no cover


_DECODERS: tuple[tuple[str, bool, Decoder], ...] = tuple(
    (column.name, bool(column.nullable), _decoder(column.type)) for column in records.c
)


# -- the same rules in SQL -------------------------------------------------------------------------

_SQLITE_TYPES = {Boolean: ("integer",), Integer: ("integer",), Float: ("integer", "real")}
_SHAPES = {  # JSON columns: the JSON type each holds, by the record's kind
    "meta": {"chat": "object", "completion": "object"},
    "extra": {"chat": "object", "completion": "object"},
    "input": {"chat": "array", "completion": "text"},
    "generated": {"chat": "array", "completion": "text"},
}


def readable_condition(backend: str) -> ColumnElement[bool]:
    """True for the rows of `jib_records` that decode, as far as the database can tell."""
    from jib._record_format import RECORD_FORMAT_VERSION

    c = records.c
    rules: list[ColumnElement[bool]] = [
        c.kind.in_(("chat", "completion")),
        c.record_version.between(1, RECORD_FORMAT_VERSION),
    ]
    for name, shapes in _SHAPES.items():
        shape = _json_type(c[name], backend)
        rules.append(
            or_(
                *(
                    and_(c.kind == kind, shape == _shape_name(t, backend))
                    for kind, t in shapes.items()
                )
            )
        )
    if backend == "sqlite":  # PostgreSQL keeps every other column as its type says
        for column in records.c:
            if isinstance(column.type, UTCDateTime):
                raw = type_coerce(column, NullType())
                rules += [func.typeof(raw) == "text", func.julianday(raw).is_not(None)]
            allowed = _sqlite_types(column.type)
            if allowed:
                rules.append(func.typeof(column).in_((*allowed, "null")))
        rules.append(c.failed.in_((0, 1)))
    return and_(*rules)


def _sqlite_types(kind: Any) -> tuple[str, ...]:
    if isinstance(kind, (String, Text)):
        return ("text",)
    for declared, allowed in _SQLITE_TYPES.items():
        if isinstance(kind, declared):
            return allowed
    return ()


def _json_type(column: Any, backend: str) -> ColumnElement[Any]:
    if backend == "sqlite":
        # json_type() fails the whole query on text that is not JSON: ask json_valid() first.
        raw = type_coerce(column, NullType())
        return case((func.json_valid(raw) == 1, func.json_type(raw)), else_=literal("invalid"))
    return func.jsonb_typeof(column)


def _shape_name(shape: str, backend: str) -> str:
    return shape if backend == "sqlite" or shape != "text" else "string"
