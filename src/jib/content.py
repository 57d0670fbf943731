"""Content parts: what a message holds besides plain text — images, audio, documents.

A message's `content` is a string, or a list of parts (`Message(role, [part, ...])`):

- `ContentText(text)`: text;
- `ContentImageUrl`: an image, by URL or inline (`from_file`, `from_bytes`, `from_url`), with the
  OpenAI `detail` hint;
- `ContentAudioInput`: a clip of audio, inline (`from_file`, `from_bytes`; wav, mp3, ogg, flac);
- `ContentFile`: a PDF or another document, inline or by URL (same constructors).

Inline data is held once, as a `data:` URL (base64), and shared by every copy of the message:
a part is frozen, so a batch of a thousand chats sending the same image holds it once. Any part
may carry `cache_control` (`{"type": "ephemeral"}`), the mark providers' prompt caches read.

Each part writes and reads the OpenAI wire shape (`to_dict` / `part_from_dict`), the shape every
provider of jib reads or LiteLLM translates from, and the shape stored with chats.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

__all__ = [
    "AUDIO_FORMATS",
    "CacheControl",
    "ContentAudioInput",
    "ContentFile",
    "ContentImageUrl",
    "ContentPart",
    "ContentText",
    "ImageDetail",
    "data_size",
    "data_url",
    "describe_part",
    "parse_data_url",
    "part_from_dict",
    "size_text",
]

CacheControl = Mapping[str, Any]
"""A prompt-cache mark, as providers write it: `{"type": "ephemeral"}` (optionally `"ttl"`)."""
ImageDetail = Literal["auto", "low", "high"]
AudioFormat = Literal["wav", "mp3", "ogg", "flac"]
AUDIO_FORMATS: frozenset[str] = frozenset(get_args(AudioFormat))
_AUDIO_MIMETYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}
_AUDIO_SUFFIXES: dict[str, str] = {
    ".wav": "wav",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".flac": "flac",
}
_REMOTE = ("http://", "https://")


def data_url(data: bytes, mimetype: str) -> str:
    """`data:<mimetype>;base64,<data>`."""
    return f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_url(url: str) -> tuple[str, bytes] | None:
    """The mimetype and bytes of a base64 `data:` URL; `None` for any other URL.

    Raises:
        ValueError: a `data:` URL whose base64 is broken.
    """
    if not url.startswith("data:"):
        return None
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ValueError("a data: URL of a part must be base64 (data:<type>;base64,<data>)")
    try:
        return header[5:-7] or "application/octet-stream", base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a data: URL of a part holds broken base64 ({exc})") from None


def _read(path: str | Path) -> tuple[bytes, Path]:
    file = Path(path).expanduser()
    try:
        return file.read_bytes(), file
    except OSError as exc:
        raise ValueError(f"cannot read '{file}': {exc.strerror or exc}") from None


def _mimetype_of(file: Path, given: str | None) -> str:
    if given:
        return given
    guessed, _ = mimetypes.guess_type(file.name)
    if guessed is None:
        raise ValueError(f"cannot tell the type of '{file.name}' from its name; pass mimetype=")
    return guessed


def _check_url(url: str, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise TypeError(f"{what} needs a URL string")
    if url.startswith("data:"):
        parse_data_url(url)  # refuse broken base64 now, not at the provider
        return url
    if not url.startswith(_REMOTE):
        raise ValueError(f"{what} URL must start with http://, https:// or data:, not {url[:20]!r}")
    return url


@dataclass(frozen=True, slots=True)
class ContentText:
    """A part of text.

    >>> ContentText("Describe this image").to_dict()
    {'type': 'text', 'text': 'Describe this image'}
    """

    text: str
    cache_control: CacheControl | None = None

    type: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"ContentText needs a string, not {type(self.text).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape."""
        return _with_cache({"type": "text", "text": self.text}, self.cache_control)


class _ByUrl:
    """What a part held as a URL knows of its inline data (a `data:` URL)."""

    __slots__ = ()

    url: str

    @property
    def mimetype(self) -> str | None:
        """The type of inline data; `None` for a remote URL."""
        parsed = self.url.startswith("data:") and parse_data_url(self.url)
        return parsed[0] if parsed else None

    @property
    def data(self) -> bytes | None:
        """The bytes of inline data; `None` for a remote URL."""
        parsed = self.url.startswith("data:") and parse_data_url(self.url)
        return parsed[1] if parsed else None


@dataclass(frozen=True, slots=True)
class ContentImageUrl(_ByUrl):
    """An image: a `http(s)://` URL the provider fetches, or inline as a `data:` URL.

    >>> ContentImageUrl.from_bytes(b"\\x89PNG", "image/png").url
    'data:image/png;base64,iVBORw=='
    """

    url: str
    detail: ImageDetail | None = None
    cache_control: CacheControl | None = None

    type: ClassVar[str] = "image_url"

    def __post_init__(self) -> None:
        _check_url(self.url, "ContentImageUrl")

    @classmethod
    def from_file(
        cls, path: str | Path, *, mimetype: str | None = None, detail: ImageDetail | None = None
    ) -> ContentImageUrl:
        """An image read from a file (its type from the name unless `mimetype` is given).

        Raises:
            ValueError: the file cannot be read, or its type cannot be told.
        """
        data, file = _read(path)
        return cls(data_url(data, _mimetype_of(file, mimetype)), detail)

    @classmethod
    def from_bytes(
        cls, data: bytes, mimetype: str, *, detail: ImageDetail | None = None
    ) -> ContentImageUrl:
        """An image from its bytes (`mimetype` such as `image/png`)."""
        return cls(data_url(data, mimetype), detail)

    @classmethod
    def from_url(cls, url: str, *, detail: ImageDetail | None = None) -> ContentImageUrl:
        """An image the provider fetches from `url` (or a `data:` URL)."""
        return cls(url, detail)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape."""
        image: dict[str, Any] = {"url": self.url}
        if self.detail is not None:
            image["detail"] = self.detail
        return _with_cache({"type": "image_url", "image_url": image}, self.cache_control)


@dataclass(frozen=True, slots=True)
class ContentAudioInput:
    """A clip of audio, inline: base64 `data` in one of `AUDIO_FORMATS`.

    >>> ContentAudioInput.from_bytes(b"RIFF", "wav").to_dict()
    {'type': 'input_audio', 'input_audio': {'data': 'UklGRg==', 'format': 'wav'}}
    """

    data: str
    format: AudioFormat
    cache_control: CacheControl | None = None

    type: ClassVar[str] = "input_audio"

    def __post_init__(self) -> None:
        if self.format not in AUDIO_FORMATS:
            raise ValueError(
                f"audio format must be one of {sorted(AUDIO_FORMATS)}, not {self.format!r}"
            )
        try:
            base64.b64decode(self.data, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ValueError(f"ContentAudioInput.data must be base64 ({exc})") from None

    @classmethod
    def from_file(cls, path: str | Path, *, format: AudioFormat | None = None) -> ContentAudioInput:
        """A clip read from a file (its format from the suffix unless `format` is given).

        Raises:
            ValueError: the file cannot be read, or its format is not one of `AUDIO_FORMATS`.
        """
        data, file = _read(path)
        found = format or _AUDIO_SUFFIXES.get(file.suffix.lower())
        if found is None:
            raise ValueError(
                f"cannot tell the audio format of '{file.name}'; pass format= "
                f"(one of {sorted(AUDIO_FORMATS)})"
            )
        return cls.from_bytes(data, found)  # type: ignore[arg-type]  # checked in __post_init__

    @classmethod
    def from_bytes(cls, data: bytes, format: AudioFormat) -> ContentAudioInput:
        """A clip from its bytes."""
        return cls(base64.b64encode(data).decode("ascii"), format)

    @property
    def mimetype(self) -> str:
        """The clip's media type (`audio/wav`, …)."""
        return _AUDIO_MIMETYPES[self.format]

    @property
    def bytes(self) -> bytes:
        """The clip's bytes."""
        return base64.b64decode(self.data)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape."""
        audio = {"data": self.data, "format": self.format}
        return _with_cache({"type": "input_audio", "input_audio": audio}, self.cache_control)


@dataclass(frozen=True, slots=True)
class ContentFile(_ByUrl):
    """A document (a PDF, …): inline as a `data:` URL, or a `http(s)://` URL.

    >>> part = ContentFile.from_bytes(b"%PDF-1.7", "application/pdf", filename="a.pdf")
    >>> part.to_dict()["file"]
    {'file_data': 'data:application/pdf;base64,JVBERi0xLjc=', 'filename': 'a.pdf'}
    """

    url: str
    filename: str | None = None
    cache_control: CacheControl | None = None

    type: ClassVar[str] = "file"

    def __post_init__(self) -> None:
        _check_url(self.url, "ContentFile")

    @classmethod
    def from_file(cls, path: str | Path, *, mimetype: str | None = None) -> ContentFile:
        """A document read from a file (its type from the name unless `mimetype` is given).

        Raises:
            ValueError: the file cannot be read, or its type cannot be told.
        """
        data, file = _read(path)
        return cls(data_url(data, _mimetype_of(file, mimetype)), file.name)

    @classmethod
    def from_bytes(cls, data: bytes, mimetype: str, *, filename: str | None = None) -> ContentFile:
        """A document from its bytes."""
        return cls(data_url(data, mimetype), filename)

    @classmethod
    def from_url(cls, url: str, *, filename: str | None = None) -> ContentFile:
        """A document the provider fetches from `url` (or a `data:` URL)."""
        return cls(url, filename)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape (`file_data` for inline data, `file_url` for a remote one)."""
        key = "file_data" if self.url.startswith("data:") else "file_url"
        file: dict[str, Any] = {key: self.url}
        if self.filename is not None:
            file["filename"] = self.filename
        return _with_cache({"type": "file", "file": file}, self.cache_control)


ContentPart = ContentText | ContentImageUrl | ContentAudioInput | ContentFile
"""Any part a message's content may hold."""

_URL_SHOWN = 60


def size_text(size: int) -> str:
    """`512 B`, `12 KB`, `1.5 MB` (1 KB = 1,024 bytes).

    >>> size_text(512), size_text(12_345), size_text(1_572_864)
    ('512 B', '12 KB', '1.5 MB')
    """
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{round(size / 1024)} KB"
    return f"{size / 1024**2:.1f} MB"


def data_size(payload: str) -> int:
    """The bytes a base64 text holds, counted without decoding it."""
    payload = payload.strip()
    return len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))


def _data_url(url: str) -> tuple[str, int] | None:
    """The type and size of a `data:` URL, or None for another URL."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    mimetype = header[5:].split(";", 1)[0] or "application/octet-stream"
    return mimetype, data_size(payload)


def _url_text(url: str) -> str:
    return url if len(url) <= _URL_SHOWN else url[: _URL_SHOWN - 1] + "…"


def describe_part(part: Any) -> str:
    """A short label of a part that is not text, from a part or its dict form (data: any shape
    is labelled without trusting it, an unknown type `[type]`, a malformed part `[part]`).

    `[image/png 12 KB]` for inline data, `[image https://…/cat.png]` for a URL,
    `[application/pdf 40 KB report.pdf]` for a named document.

    >>> describe_part(ContentImageUrl.from_bytes(bytes(12 * 1024), "image/png"))
    '[image/png 12 KB]'
    """
    if isinstance(part, (ContentText, ContentImageUrl, ContentAudioInput, ContentFile)):
        part = part.to_dict()
    if not isinstance(part, Mapping):
        return "[part]"
    kind = part.get("type")
    body = part.get(kind) if isinstance(kind, str) else None
    if kind == "image_url":
        url = body.get("url") if isinstance(body, Mapping) else body
        return _labelled("image", url)
    if kind == "input_audio" and isinstance(body, Mapping):
        data, format = body.get("data"), body.get("format")
        mimetype = _AUDIO_MIMETYPES.get(str(format), f"audio/{format}")
        return f"[{mimetype} {size_text(data_size(data))}]" if isinstance(data, str) else "[audio]"
    if kind == "file" and isinstance(body, Mapping):
        label = _labelled("file", body.get("file_data") or body.get("file_url"))
        name = body.get("filename")
        return label[:-1] + f" {name}]" if isinstance(name, str) and name else label
    return f"[{kind}]" if isinstance(kind, str) and kind else "[part]"


def _labelled(kind: str, url: Any) -> str:
    if not isinstance(url, str):
        return f"[{kind}]"
    inline = _data_url(url)
    if inline is not None:
        return f"[{inline[0]} {size_text(inline[1])}]"
    return f"[{kind} {_url_text(url)}]"


def _with_cache(part: dict[str, Any], cache_control: CacheControl | None) -> dict[str, Any]:
    if cache_control is not None:
        part["cache_control"] = dict(cache_control)
    return part


def part_from_dict(value: Any) -> ContentPart:
    """A part from its OpenAI wire shape (as `to_dict` writes it), or a part as is; a plain
    string is a `ContentText`.

    Raises:
        ValueError: an unknown `type`, or a part missing what its type needs.
    """
    if isinstance(value, (ContentText, ContentImageUrl, ContentAudioInput, ContentFile)):
        return value
    if isinstance(value, str):
        return ContentText(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"a content part must be a part or a mapping, not {type(value).__name__}")
    kind = value.get("type")
    cache = value.get("cache_control")
    try:
        if kind == "text":
            return ContentText(value["text"], cache)
        if kind == "image_url":
            image = value["image_url"]
            if isinstance(image, str):
                return ContentImageUrl(image, cache_control=cache)
            return ContentImageUrl(image["url"], image.get("detail"), cache)
        if kind == "input_audio":
            audio = value["input_audio"]
            return ContentAudioInput(audio["data"], audio["format"], cache)
        if kind == "file":
            file = value["file"]
            url = file.get("file_data") or file.get("file_url")
            if url is None:
                raise KeyError("file_data")
            return ContentFile(url, file.get("filename"), cache)
    except (KeyError, TypeError) as missing:
        raise ValueError(f"a {kind!r} content part lacks {missing}") from None
    known = "text, image_url, input_audio, file"
    raise ValueError(f"unknown content part type {kind!r} (expected one of: {known})")
