"""Files and URLs attached to a prompt (`jib chat -a`, a dataset's `attachments`), as parts.

What a file becomes is told by its type, from its name (a machine-independent table, not the
system's): an image is a `ContentImageUrl`, audio in wav, mp3, ogg or flac a `ContentAudioInput`,
a PDF, text or office document a `ContentFile`. Anything else — video, archives, programs, a name
with no known suffix — is refused with an `AttachmentError` saying what can be sent. A URL is
passed on as a URL (the provider fetches it; see `jib.cli._dataset_files` for when data may name
one), typed by the suffix of its path; a `data:` URL by its own type. Inline data is read whole,
so a file may be at most `MAX_ATTACHMENT_BYTES`.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from jib.content import (
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    ContentPart,
    parse_data_url,
)
from jib.errors import JibError

__all__ = [
    "MAX_ATTACHMENT_BYTES",
    "AttachmentError",
    "RefusedAttachmentError",
    "attachment_kind",
    "part_from_bytes",
    "part_from_file",
    "part_from_source",
    "part_from_url",
]

MAX_ATTACHMENT_BYTES = 50 * 2**20
"""The largest file jib attaches: 50 MiB (providers take less: OpenAI 20 MB an image)."""

_REMOTE = ("http://", "https://")
_SENDABLE = "images, audio in wav, mp3, ogg or flac, and documents (PDF, text, office files)"
_AUDIO_FORMATS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
}
_DOCUMENTS = frozenset(
    {
        "application/pdf",
        "application/json",
        "application/xml",
        "application/rtf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
    }
)
_DOCUMENT_PREFIXES = (
    "text/",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)
_EXTRA_SUFFIXES = {  # common suffixes Python's own table lacks on some versions
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "text/yaml",
    ".yml": "text/yaml",
    ".flac": "audio/flac",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".webp": "image/webp",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
}


class AttachmentError(JibError):
    """A file or URL cannot be attached: missing, unreadable, too large, or of a type jib cannot
    send (the message names it and says what can be sent)."""


class RefusedAttachmentError(AttachmentError):
    """Data (a dataset line) names a file outside its folder, or a URL a generator would fetch
    from this machine, and the user did not allow it (the message says how to)."""


@cache
def _table() -> mimetypes.MimeTypes:
    # Python's built-in table only: the system's /etc/mime.types differs between machines.
    return mimetypes.MimeTypes()


def _type_of_name(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _EXTRA_SUFFIXES:
        return _EXTRA_SUFFIXES[suffix]
    guessed, _ = _table().guess_type("x" + suffix, strict=False) if suffix else (None, None)
    return guessed


def attachment_kind(mimetype: str) -> str | None:
    """`image`, `audio`, `file` (a document), or `None` for a type jib cannot send.

    >>> [attachment_kind(t) for t in ("image/png", "audio/mpeg", "application/pdf", "video/mp4")]
    ['image', 'audio', 'file', None]
    """
    mimetype = mimetype.lower()
    if mimetype.startswith("image/"):
        return "image"
    if mimetype in _AUDIO_FORMATS:
        return "audio"
    if mimetype in _DOCUMENTS or mimetype.startswith(_DOCUMENT_PREFIXES):
        return "file"
    return None


def _refuse_type(shown: str, mimetype: str | None) -> AttachmentError:
    if mimetype is None:
        return AttachmentError(
            f"cannot tell what {shown} is from its name; jib attaches {_SENDABLE}, told by the "
            "file's suffix (.png, .mp3, .pdf, …)"
        )
    if mimetype.startswith("audio/"):
        return AttachmentError(
            f"{shown} is {mimetype}: jib sends audio as wav, mp3, ogg or flac; convert it first "
            "(e.g. ffmpeg -i in.m4a out.mp3)"
        )
    return AttachmentError(f"jib cannot send {shown} ({mimetype}); it attaches {_SENDABLE}")


def part_from_bytes(data: bytes, mimetype: str, *, name: str, shown: str) -> ContentPart:
    """The part for `data` of type `mimetype` (a file's bytes, named `name`).

    Raises:
        AttachmentError: jib cannot send that type.
    """
    kind = attachment_kind(mimetype)
    if kind == "image":
        return ContentImageUrl.from_bytes(data, mimetype)
    if kind == "audio":
        return ContentAudioInput.from_bytes(data, _AUDIO_FORMATS[mimetype.lower()])  # type: ignore[arg-type]
    if kind == "file":
        return ContentFile.from_bytes(data, mimetype, filename=name)
    raise _refuse_type(shown, mimetype)


def checked_type(path: Path, shown: str) -> str:
    """The type of the file at `path`, once it is known to be a file jib can attach.

    Raises:
        AttachmentError: no such file, not a regular file, too large, or of a type jib cannot
            send.
    """
    mimetype = _type_of_name(path.name)
    if mimetype is None or attachment_kind(mimetype) is None:
        raise _refuse_type(shown, mimetype)
    try:
        if not path.exists():
            raise AttachmentError(f"{shown}: no such file")
        if not path.is_file():
            raise AttachmentError(f"{shown} is not a file")
        size = path.stat().st_size
    except OSError as exc:
        raise AttachmentError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if size > MAX_ATTACHMENT_BYTES:
        raise AttachmentError(
            f"{shown} is {size:,} bytes; jib attaches files of at most "
            f"{MAX_ATTACHMENT_BYTES // 2**20} MiB"
        )
    return mimetype


def part_from_file(path: Path, shown: str) -> ContentPart:
    """The part for the file at `path` (named `shown` in messages), read whole.

    Raises:
        AttachmentError: see `checked_type`; or the file cannot be read.
    """
    mimetype = checked_type(path, shown)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ATTACHMENT_BYTES + 1)
    except OSError as exc:
        raise AttachmentError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(data) > MAX_ATTACHMENT_BYTES:  # it grew since it was checked
        raise AttachmentError(
            f"{shown} is larger than {MAX_ATTACHMENT_BYTES // 2**20} MiB, the most jib attaches"
        )
    return part_from_bytes(data, mimetype, name=path.name, shown=shown)


def part_from_url(url: str, shown: str) -> ContentPart:
    """The part for a `http(s)://` URL (typed by its path's suffix) or a `data:` URL.

    Raises:
        AttachmentError: the type cannot be told or sent, audio is named by URL (audio is sent
            inline only), or a `data:` URL is broken.
    """
    if url.startswith("data:"):
        try:
            parsed = parse_data_url(url)
        except ValueError as exc:
            raise AttachmentError(f"{shown}: {exc}") from None
        assert parsed is not None
        return part_from_bytes(parsed[1], parsed[0], name="attachment", shown=shown)
    path = unquote(urlsplit(url).path)
    mimetype = _type_of_name(path)
    kind = attachment_kind(mimetype) if mimetype else None
    if kind == "image":
        return ContentImageUrl.from_url(url)
    if kind == "file":
        name = PurePosixPath(path).name
        return ContentFile.from_url(url, filename=name or None)
    if kind == "audio":
        raise AttachmentError(f"{shown}: audio is sent inline; download it and attach the file")
    raise _refuse_type(shown, mimetype)


def is_url(source: str) -> bool:
    """Whether an attachment names a URL (`http(s)://` or `data:`) rather than a file."""
    return source.startswith((*_REMOTE, "data:"))


def part_from_source(source: str) -> ContentPart:
    """The part for what the user attached (`jib chat -a`): a file path (`~` is the home folder)
    or a URL. The user's own choice: any path, any URL.

    Raises:
        AttachmentError: see `part_from_file` and `part_from_url`.
    """
    shown = repr(source)
    if not source.strip():
        raise AttachmentError("an attachment names no file")
    if is_url(source):
        return part_from_url(source, shown)
    return part_from_file(Path(source).expanduser(), shown)
