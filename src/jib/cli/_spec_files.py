"""`spec=@path` in identifiers the user gives: the spec is read from that file.

    jib chat 'http!my-bot,spec=@bot.yaml' "Hello"

The file's content replaces `@path` (written as base64 of its YAML, as every identifier carries
a spec), so the stored chat holds the spec itself and can be continued on another machine.

Only identifiers the user wrote are expanded — command-line arguments, `$JIB_GENERATOR`, files
the user names. An identifier read back from a stored chat is data: expanding `@path` there
would let whoever wrote the store read any local file and send it to a server. Such an
identifier reaches `get_generator` as it is, where `@path` is not a valid spec.

Relative paths start from the current directory. For an identifier inside a file the user named
(a dataset, a list of identifiers), pass that file's folder as `base`: the path must then be
relative and stay inside that folder, since such files are shared and not written by the user.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from jib._syntax import IdentifierSyntaxError, format_identifier, parse_identifier, unescape
from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    from jib.generator.http import HTTPSpec

__all__ = ["FILE_PREFIX", "expand_spec_file", "read_spec_file", "spec_type_of"]

FILE_PREFIX = "@"
"""`spec=@path` reads the spec from `path`."""

_KEY = "spec"
_MAX_BYTES = 4_000_000  # `MAX_SPEC_CHARS` characters of UTF-8 at most; larger is refused unread


def expand_spec_file(identifier: str, *, base: Path | None = None) -> str:
    """`identifier` with `spec=@path` replaced by the spec that file holds.

    Args:
        identifier: an identifier the user wrote (never one read from a store).
        base: the folder of the file the identifier was read from: the spec file must be
            inside it. Default: the identifier was typed, relative paths start from the current
            directory and any path may be given.

    Raises:
        InvalidGeneratorError: the file cannot be read or holds no valid spec; the message names
            the file and the first problem.
    """
    if FILE_PREFIX not in identifier:
        return identifier
    try:
        parsed = parse_identifier(identifier)
        raw = parsed.kwargs.get(_KEY)
        value = None if raw is None else unescape(raw).strip()
    except IdentifierSyntaxError:
        return identifier  # `get_generator` says what is wrong with it
    if value is None or not value.startswith(FILE_PREFIX):
        return identifier
    spec_type = spec_type_of(parsed.provider)
    spec = read_spec_file(value[len(FILE_PREFIX) :], base=base, spec_type=spec_type).to_base64()
    items = [(key, spec if key == _KEY else raw) for key, raw in parsed.kwargs.items()]
    return format_identifier(parsed.provider, parsed.model, items)


def spec_type_of(provider: str | None) -> type[HTTPSpec] | None:
    """The spec class the provider's `spec` attribute takes (`WSSpec` for `ws!`), or `None`
    for `HTTPSpec` (also when the provider is unknown: `get_generator` says so)."""
    from jib.generator.http import HTTPSpec
    from jib.registry import resolve_provider

    try:
        cls = resolve_provider(provider or "http")
    except InvalidGeneratorError:
        return None
    field = cls.model_fields.get(_KEY)
    annotation = None if field is None else field.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, HTTPSpec):
            return candidate
    return None


def read_spec_file(
    name: str, *, base: Path | None = None, spec_type: type[HTTPSpec] | None = None
) -> HTTPSpec:
    """The spec in file `name` (YAML or JSON), read as `spec_type` (default `HTTPSpec`).

    Raises:
        InvalidGeneratorError: no such file, not UTF-8, too large, or not a valid spec.
    """
    from jib.generator.http import HTTPSpec

    spec_type = spec_type or HTTPSpec
    shown = f"{_KEY}={FILE_PREFIX}{name}"
    if not name.strip():
        raise InvalidGeneratorError(f"{shown} names no file; write {_KEY}={FILE_PREFIX}path.yaml")
    path = Path.cwd() / Path(name).expanduser() if base is None else base / name
    try:
        if base is not None and not _inside(name, base):
            raise InvalidGeneratorError(
                f"{shown}: a spec file named inside {base} must be a relative path within "
                "that folder"
            )
        if not path.is_file():
            where = "relative paths start from the current directory" if base is None else ""
            raise InvalidGeneratorError(
                f"{shown}: no such file ({path})" + (f"; {where}" if where else "")
            )
        if path.stat().st_size > _MAX_BYTES:
            raise InvalidGeneratorError(
                f"{shown}: the file is larger than {_MAX_BYTES} bytes; a spec is a few lines"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidGeneratorError(f"{shown}: the file is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise InvalidGeneratorError(f"{shown}: cannot read the file: {exc}") from exc
    try:
        return spec_type.model_validate(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = first["msg"].removeprefix("Value error, ")
        if first["loc"]:  # a field's error; a whole-spec check names its place in the message
            problem = ".".join(str(part) for part in first["loc"]) + ": " + problem
        # Not chained: pydantic's message quotes the input, and a spec may hold a key.
        raise InvalidGeneratorError(f"{shown}: invalid spec: {problem}") from None


def _inside(name: str, base: Path) -> bool:
    """Whether `name`, relative to `base`, stays inside `base` once links are followed."""
    if Path(name).is_absolute():
        return False
    try:
        return (base / name).resolve().is_relative_to(base.resolve())
    except RuntimeError:  # a symlink loop (Python 3.10-3.12; later versions raise OSError)
        return False
