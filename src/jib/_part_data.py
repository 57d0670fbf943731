"""The inline data of content parts in record dicts, swapped for references and back.

A record dict's messages hold content parts in the OpenAI shape (see `jib.content`). An inline
part keeps its bytes in one of three *data slots*: `image_url.url` and `file.file_data` hold a
base64 `data:` URL (`data:<header>;base64,<payload>`), `input_audio.data` bare base64 (its type
from `input_audio.format`). Where a record leaves memory its bytes may be kept apart, once per
content, and the slot then holds a reference in place of the data:

- `jib-blob:<header>,<sha256>`: in a store, the bytes are the row of `jib_blobs` with that
  SHA-256 (hex) of their content;
- `jib-file:<header>,<path>`: in a JSON Lines export written with its parts as files, the bytes
  are the file at `<path>`, relative to the export's folder (`/`-separated).

`<header>` is the data URL's (its media type and any parameters, `image/png`), so the data URL
comes back character for character; for audio it is the format's media type (`audio/wav`),
shown only. Only canonical base64 is swapped (what jib writes): other inline data stays inline,
so nothing read back ever differs from what was written. Text parts, remote URLs and strings
outside the data slots are never touched: a text saying `data:…` stays text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "BLOB",
    "FILE",
    "FileReader",
    "FileWriter",
    "PartDataError",
    "Swap",
    "canonical_bytes",
    "digest",
    "encoded",
    "files_folder",
    "inline",
    "reference",
    "restored",
    "swap_data",
]

BLOB = "jib-blob:"
"""The scheme of a reference to a store's blob."""
FILE = "jib-file:"
"""The scheme of a reference to a file beside an export."""

_SLOTS = {"image_url": "url", "file": "file_data", "input_audio": "data"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}

Swap = Callable[[str, "str | None"], "str | None"]
"""Given a data slot's value and, for audio, its format (else `None`): the value to put in its
place, or `None` to leave it."""


class PartDataError(ValueError):
    """A reference in a data slot cannot be followed (the message says why, without values)."""


def swap_data(messages: Any, swap: Swap) -> Any:
    """`messages` (a list of message dicts) with each data slot's value swapped by `swap`.

    Only what changes is copied; anything not shaped like messages is returned as it is (the
    record's validation says what is wrong with it).
    """
    if not isinstance(messages, list):
        return messages
    swapped: list[Any] | None = None
    for index, message in enumerate(messages):
        new = _swap_message(message, swap)
        if new is not message:
            swapped = swapped if swapped is not None else list(messages)
            swapped[index] = new
    return messages if swapped is None else swapped


def _swap_message(message: Any, swap: Swap) -> Any:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return message
    swapped: list[Any] | None = None
    for index, part in enumerate(content):
        new = _swap_part(part, swap)
        if new is not part:
            swapped = swapped if swapped is not None else list(content)
            swapped[index] = new
    return message if swapped is None else {**message, "content": swapped}


def _swap_part(part: Any, swap: Swap) -> Any:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str) or kind not in _SLOTS:
        return part
    inner = part.get(kind)
    slot = _SLOTS[kind]
    value = inner.get(slot) if isinstance(inner, dict) else None
    if not isinstance(value, str):
        return part
    audio_format = None
    if kind == "input_audio":
        found = inner.get("format")
        audio_format = found if isinstance(found, str) else ""
    new = swap(value, audio_format)
    if new is None or new == value:
        return part
    return {**part, kind: {**inner, slot: new}}


def inline(value: str, audio_format: str | None) -> tuple[str, str] | None:
    """The header and base64 payload of a data slot's inline data; `None` for anything else (a
    remote URL, a reference, a data URL that is not base64)."""
    if audio_format is not None:
        if value.startswith((BLOB, FILE)):
            return None
        return _AUDIO_TYPES.get(audio_format, "application/octet-stream"), value
    if not value.startswith("data:"):
        return None
    header, comma, payload = value[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    return header[:-7], payload


def canonical_bytes(payload: str) -> bytes | None:
    """The bytes of base64 `payload`, when encoding them again gives `payload` back exactly."""
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data) == payload.encode("ascii") else None


def encoded(header: str, data: bytes, audio_format: str | None) -> str:
    """A data slot's inline value for `data` (the inverse of `inline` and `canonical_bytes`)."""
    payload = base64.b64encode(data).decode("ascii")
    return payload if audio_format is not None else f"data:{header};base64,{payload}"


def reference(scheme: str, header: str, target: str) -> str:
    """`<scheme><header>,<target>`."""
    return f"{scheme}{header},{target}"


def restored(value: str, scheme: str) -> tuple[str, str] | None:
    """The header and target of a reference of `scheme`; `None` when `value` is not one."""
    if not value.startswith(scheme):
        return None
    header, comma, target = value[len(scheme) :].partition(",")
    if not comma:
        raise PartDataError(f"a part holds a broken {scheme[:-1]} reference (no comma)")
    return header, target


def digest(data: bytes) -> str:
    """The SHA-256 of `data` in hex: the name of its blob or file."""
    return hashlib.sha256(data).hexdigest()


def _suffix(header: str, audio_format: str | None) -> str:
    if audio_format:
        return f".{audio_format}" if audio_format.isalnum() else ""
    media_type = header.partition(";")[0].strip().lower()
    return mimetypes.guess_extension(media_type, strict=False) or ""


def files_folder(export: Path) -> Path:
    """The folder beside `export` that its parts' files go to (`r.jsonl` → `r.files`)."""
    folder = export.with_suffix(".files")
    return folder if folder != export else export.with_name(export.name + ".files")


class FileWriter:
    """Writes the inline data of parts as files beside an export, one file per content.

    Used as a `Swap`: each inline value becomes a `jib-file:` reference to
    `<export stem>.files/<sha256><suffix>`; a value seen before is not decoded again.
    """

    def __init__(self, export: Path) -> None:
        self._base = export.parent
        self._folder = files_folder(export)
        self._done: dict[tuple[str, str | None], str] = {}
        self.written = 0
        """How many files this writer wrote."""

    def __call__(self, value: str, audio_format: str | None) -> str | None:
        key = (value, audio_format)
        found = self._done.get(key)
        if found is not None:
            return found
        split = inline(value, audio_format)
        data = canonical_bytes(split[1]) if split else None
        if split is None or data is None:
            return None
        header = split[0]
        target = self._folder / (digest(data) + _suffix(header, audio_format))
        self._folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)  # once per content and export: never trust a file left there
        self.written += 1
        relative = target.relative_to(self._base).as_posix()
        self._done[key] = ref = reference(FILE, header, relative)
        return ref


class FileReader:
    """Reads `jib-file:` references back into inline data, from files beside an export only.

    Used as a `Swap`. A reference is refused (a `PartDataError`) when its path is absolute,
    climbs out with `..`, or leads out of the export's folder through a link; when there is no
    export folder (the lines were not read from a file); or when the file cannot be read.
    """

    def __init__(self, base: Path | None) -> None:
        self._base = base.resolve() if base is not None else None
        self._done: dict[tuple[str, str | None], str] = {}

    def __call__(self, value: str, audio_format: str | None) -> str | None:
        split = restored(value, FILE)
        if split is None:
            return None
        key = (value, audio_format)
        found = self._done.get(key)
        if found is None:
            header, path = split
            self._done[key] = found = encoded(header, self._read(path), audio_format)
        return found

    def _read(self, path: str) -> bytes:
        if self._base is None:
            raise PartDataError(
                "a part refers to a file beside its export, but these lines were not read "
                "from a file (pass the export's path)"
            )
        relative = PurePosixPath(path)
        if (
            not path
            or relative.is_absolute()
            or ".." in relative.parts
            or "\\" in path
            or ":" in path
        ):
            raise PartDataError(
                "a part refers to a file by an absolute path or one with '..': only files "
                "beside the export are read"
            )
        target = (self._base / relative).resolve()
        if not target.is_relative_to(self._base):
            raise PartDataError("a part refers to a file that leads out of the export's folder")
        if not target.is_file():
            raise PartDataError("a part refers to a file beside the export that does not exist")
        try:
            return target.read_bytes()
        except OSError as exc:
            raise PartDataError(
                f"a part refers to a file beside the export that cannot be read "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
