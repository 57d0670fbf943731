"""Typed values in identifiers: how a field's value is written as text and read back.

Three kinds of field:

- scalar (`str`, `int`, `float`, `bool`, enums, literals): written as text, read back by pydantic's
  usual string coercion, so `temperature=True` or `max_tokens=1.5` fail validation;
- list of strings (`stop`): items joined by `;`;
- anything else (dicts, models, other lists): compact JSON, base64url-encoded so it needs no
  escaping. On reading, plain JSON text is accepted too, and any other string is handed to the
  field's own validator (an `HTTPSpec` accepts YAML, for example). JSON nested deeper than
  `jib._json.MAX_DEPTH` levels is refused (`IdentifierSyntaxError`), never parsed.

An empty value (`key=`) of a field that accepts `None` means `None`: that is how an identifier
unsets an optional field whose default is not `None`.

Booleans follow one strict rule wherever they are read from text or data (`read_bool`): `true`
or `false`, in any case. `1`, `yes` or `on` are not booleans: a bool field refuses them, and the
trust check (`jib.trust`) counts such a value of a code option as switched on.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from jib._json import loads as load_json
from jib._syntax import IdentifierSyntaxError, escape, unescape

__all__ = [
    "FieldKind",
    "bool_fields",
    "decode_value",
    "encode_value",
    "field_kind",
    "field_kinds",
    "from_base64",
    "optional_fields",
    "read_bool",
]

FieldKind = Literal["scalar", "list", "complex"]
_SCALARS: tuple[type, ...] = (str, int, float, bool, bytes, SecretStr)


def _strip_optional(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin is Union or origin is types.UnionType:
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def field_kind(annotation: Any) -> FieldKind:
    """Classify a field's type annotation for identifier encoding (cached per annotation)."""
    try:
        return _cached_field_kind(annotation)
    except TypeError:  # an unhashable annotation (Annotated with unhashable metadata)
        return _field_kind(annotation)


@functools.lru_cache(maxsize=256)
def field_kinds(model: type[BaseModel]) -> dict[str, FieldKind]:
    """The kind of every field of a pydantic model class (cached per class; do not mutate)."""
    return {name: field_kind(info.annotation) for name, info in model.model_fields.items()}


@functools.lru_cache(maxsize=256)
def optional_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a pydantic model class whose type accepts `None` (cached per class)."""
    return frozenset(
        name for name, info in model.model_fields.items() if _accepts_none(info.annotation)
    )


@functools.lru_cache(maxsize=256)
def bool_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a pydantic model class whose type is `bool` (or `bool | None`)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if _strip_optional(info.annotation) is bool
    )


def read_bool(value: Any, *, what: str = "the value") -> bool:
    """The one rule for a boolean read from data: `True`/`False`, or `true`/`false` in any case.

    >>> read_bool("True"), read_bool(False)
    (True, False)

    Raises:
        IdentifierSyntaxError: anything else (`1`, `"yes"`, `"on"`, `""`); `what` names it.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    raise IdentifierSyntaxError(f"{what} must be true or false, not {shown}")


def _accepts_none(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _accepts_none(get_args(annotation)[0])
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_accepts_none(arg) for arg in get_args(annotation))
    return False


@functools.lru_cache(maxsize=512)
def _cached_field_kind(annotation: Any) -> FieldKind:
    return _field_kind(annotation)


def _field_kind(annotation: Any) -> FieldKind:
    annotation = _strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "scalar"
    if origin in (list, tuple, set, frozenset):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        if args and all(_strip_optional(arg) is str for arg in args):
            return "list"
        return "complex"
    if isinstance(annotation, type) and (
        issubclass(annotation, _SCALARS) or issubclass(annotation, enum.Enum)
    ):
        return "scalar"
    if origin is Union or origin is types.UnionType:
        members = [_strip_optional(arg) for arg in get_args(annotation)]
        if all(isinstance(m, type) and issubclass(m, _SCALARS) for m in members):
            return "scalar"
    return "complex"


def encode_value(value: Any, kind: FieldKind) -> str:
    """Write `value` as escaped identifier text for a field of `kind`."""
    if kind == "list" and isinstance(value, (list, tuple, set, frozenset)):
        return ";".join(escape(str(item)) for item in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # `temperature=0`, not `temperature=0.0`
    if kind == "scalar" or isinstance(value, (str, int, float, bool)):
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return escape(str(value))
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    elif isinstance(value, (list, tuple)) and any(isinstance(item, BaseModel) for item in value):
        value = [
            item.model_dump(mode="json", exclude_defaults=True)
            if isinstance(item, BaseModel)
            else item
            for item in value
        ]
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON's `\ud800` escape reads back the same
        encoded = json.dumps(value, separators=(",", ":"), sort_keys=True).encode("ascii")
    return base64.urlsafe_b64encode(encoded).decode("ascii").rstrip("=")


def decode_value(raw: str, kind: FieldKind, *, what: str = "the value") -> Any:
    """Read escaped identifier text `raw` for a field of `kind` (validation is the caller's).

    Raises:
        IdentifierSyntaxError: a %-escape is not UTF-8, or the value is JSON nested too deeply
            (`what` names the value in the message).
    """
    if kind == "list":
        if raw == "":
            return []
        return [unescape(item.strip()) for item in raw.split(";")]
    text = unescape(raw)
    if kind == "scalar":
        return text
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return load_json(stripped, what=what, error=IdentifierSyntaxError)
        except IdentifierSyntaxError:
            raise
        except ValueError:
            return text
    decoded = from_base64(stripped)
    if decoded is not None:
        try:
            return load_json(decoded, what=f"{what} (base64-decoded)", error=IdentifierSyntaxError)
        except IdentifierSyntaxError:
            raise
        except ValueError:
            pass
    return text


def from_base64(text: str) -> str | None:
    """Decode base64 (URL-safe or standard, padding and line breaks optional) to text, or None."""
    compact = "".join(text.split())
    if not compact:
        return None
    padded = compact + "=" * (-len(compact) % 4)
    for altchars in (b"-_", b"+/"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            continue
    return None
