"""Reading a prompts dataset: `.txt`, `.jsonl` or `.csv`, from a file or from stdin (`-`).

- `.txt`: one prompt per line.
- `.jsonl`: one prompt per line, as one of
  - a string: one user message;
  - a list of messages (`{"role": …, "content": …}` objects or strings);
  - an object with `"prompt"` (a string) or `"messages"` (a list as above), and optionally
    `"id"` (a string or an integer), `"params"` (generation params for this line only, e.g.
    `{"temperature": 0.7}`), `"metadata"` (an object) and any other keys (`"expected"`,
    `"category"`, …), which are kept in the chat's metadata along with `"metadata"`'s own.
    With `column`, the prompt is read from that key instead of `"prompt"`. Messages may hold
    content parts in the OpenAI shape (`{"type": "image_url", …}`), and `"attachments"` (a list
    of file paths relative to the dataset's folder, or URLs) adds files to the last user message
    as parts (`jib.cli._attachments` says what each file becomes).
- `.csv`: a header row, then one prompt per row, read from the `column` column, else the column
  named `prompt`, else the only column. A column named `id` names the prompt; every other column
  is kept in the chat's metadata (as text).

Every prompt has an id, unique in the file: its `id`, else its line number (for a CSV row, the
line it starts on). `jib run` stores it with each chat (metadata key `prompt_id`). The format
comes from the file's suffix (anything else is text), or for stdin from its first line (`{` or
`[` starting a JSON value: JSONL; else text), unless given. Blank lines are skipped. Files are
read lazily, so a large file is never held in memory whole; stdin is read once and kept.

A line may hold at most `max_line` characters (`DEFAULT_MAX_LINE`: 16 MiB of plain text; `jib
run --max-line-mib N` changes it), and so may a CSV field: a longer one is refused with an error
naming the file and line, read no further than the limit (a line is never held whole first).
The CSV reader's field limit is process-wide state of Python's `csv` module; reading a CSV
dataset sets it to `max_line`.

A dataset is data: the files and URLs a line attaches follow the trust rule of
`jib.cli._dataset_files`, and a line that breaks it fails alone (`PromptsFile.refusal`). An
attachment that is missing or of a type jib cannot send is a malformed line (the file is checked
when the dataset is opened, and read when its prompt is sent).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from jib._json import loads as load_json
from jib.cli._attachments import (
    AttachmentError,
    RefusedAttachmentError,
    checked_type,
    is_url,
    part_from_file,
    part_from_url,
)
from jib.cli._common import EXIT_USAGE, CliError
from jib.cli._dataset_files import DataAllowances, url_refusal
from jib.content import ContentPart
from jib.errors import JibError, UntrustedIdentifierError
from jib.messages import Message, as_messages
from jib.params import GenerateParams
from jib.storage._rows import PROMPT_ID, SAMPLE_INDEX
from jib.trust import TrustPolicy

_Item = TypeVar("_Item")

if TYPE_CHECKING:
    from jib.generator.base import Generator

__all__ = ["Prompt", "PromptsFile", "PromptsFormat"]

STDIN = "-"
_LINE_KEYS = frozenset({"id", "messages", "params", "metadata", "attachments"})
"""The keys of a JSONL line that are not metadata (with the prompt's own key)."""
_RESERVED = (PROMPT_ID, SAMPLE_INDEX)
"""Metadata keys `jib run` writes itself; a dataset may not use them."""
_MAX_ID = 255

MIB = 2**20
DEFAULT_MAX_LINE = 16 * MIB
"""The most characters a dataset line (or CSV field) may hold by default: 16 MiB of ASCII."""


class PromptsFormat(str, Enum):
    """The formats a prompts dataset can be in."""

    txt = "txt"
    jsonl = "jsonl"
    csv = "csv"


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt of the dataset: its id and line, messages, params and metadata of its own,
    and why it may not be sent at all (`refused`: an attachment the trust rule refuses, or one
    that could not be read when the prompt was)."""

    id: str
    line: int
    messages: list[Message]
    params: GenerateParams | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    refused: JibError | None = None

    @property
    def has_system(self) -> bool:
        """Whether the prompt brings a system message of its own."""
        return any(message.role == "system" for message in self.messages)


def _format_of(path: Path) -> PromptsFormat:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return PromptsFormat.jsonl
    if suffix == ".csv":
        return PromptsFormat.csv
    return PromptsFormat.txt


def _sniff(text: str) -> PromptsFormat:
    first = next((line.strip() for line in io.StringIO(text) if line.strip()), "")
    if first.startswith(("{", "[")):
        try:
            load_json(first, what="stdin line 1", error=ValueError)
        except ValueError:
            return PromptsFormat.txt
        return PromptsFormat.jsonl
    return PromptsFormat.txt


class PromptsFile:
    """A prompts dataset, checked once when opened; iterate it (again) to stream its prompts.

    Args:
        path: the file, or `Path("-")` for stdin.
        format: the format; default: from the suffix (see the module docs).
        column: the column (CSV) or key (JSONL) holding the prompt.
        trust: decides which `extra` keys of a line's params (data) a generator may be sent,
            and that they read no variable and run no code (default: `TrustPolicy.from_env()`;
            see `refusal` and `jib.trust`).
        max_line: the most characters a line or CSV field may hold (see the module docs).
        allowances: the folders and hosts a line's attachments may name beyond the dataset's
            own folder (default: none; see `jib.cli._dataset_files`).

    Raises:
        CliError: the file is missing or unreadable, has no prompts, a line is malformed, too
            long or repeats an id (the message names the line), or `column` does not fit the
            file.
    """

    def __init__(
        self,
        path: Path,
        *,
        format: PromptsFormat | None = None,
        column: str | None = None,
        stdin: IO[str] | None = None,
        trust: TrustPolicy | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        allowances: DataAllowances | None = None,
    ) -> None:
        if max_line < 1:
            raise CliError(
                f"the line limit must be at least 1 character, not {max_line}", EXIT_USAGE
            )
        self.max_line = max_line
        self.path = path
        self.trust = trust if trust is not None else TrustPolicy.from_env()
        self.allowances = allowances or DataAllowances()
        self._text: str | None = None
        self.refused_lines: list[int] = []
        """The lines whose attachments the trust rule refuses (each fails alone)."""
        if str(path) == STDIN:
            self.name = "stdin"
            self.folder = Path.cwd()
            self._text = self._read_stdin(stdin or sys.stdin)
            self.format = format or _sniff(self._text)
        else:
            self.name = path.name
            self.folder = path.parent if path.parent != Path() else Path.cwd()
            if not path.exists():
                raise CliError(f"prompts file '{path}' not found", EXIT_USAGE)
            if not path.is_file():
                raise CliError(f"prompts file '{path}' is not a file", EXIT_USAGE)
            self.format = format or _format_of(path)
        if column is not None and self.format is PromptsFormat.txt:
            raise CliError(
                f"--column picks the prompt of a .csv or .jsonl dataset; {self.name} is read as "
                "text (one prompt per line; give --prompts-format if it is not)",
                EXIT_USAGE,
            )
        self.column = column
        self.count = self._check()

    @property
    def label(self) -> str:
        """How the dataset is named in hints: its path, or `-` for stdin."""
        return STDIN if self._text is not None else self.path.as_posix()

    def _read_stdin(self, stream: IO[str]) -> str:
        try:
            return stream.read()
        except UnicodeDecodeError as exc:
            raise CliError(f"stdin is not UTF-8 text: {exc.reason}", EXIT_USAGE) from None

    def _check(self) -> int:
        if self.format is PromptsFormat.txt:
            # A line's id is its number, so nothing repeats: the lines are all there is to check.
            count = sum(1 for _ in self._reading(self._texts))
            if not count:
                raise CliError(f"prompts file '{self.label}' has no prompts", EXIT_USAGE)
            return count
        seen: dict[str, int] = {}
        for prompt in self._prompts(read_files=False):
            if prompt.refused is not None:
                self.refused_lines.append(prompt.line)
            first = seen.setdefault(prompt.id, prompt.line)
            if first != prompt.line:
                raise CliError(
                    f"{self.name} line {prompt.line}: id {prompt.id!r} is already the id of line "
                    f"{first}; every prompt needs its own id",
                    EXIT_USAGE,
                )
        if not seen:
            raise CliError(f"prompts file '{self.label}' has no prompts", EXIT_USAGE)
        return len(seen)

    def __iter__(self) -> Iterator[Prompt]:
        return self._prompts(read_files=True)

    def _prompts(self, *, read_files: bool) -> Iterator[Prompt]:
        """The prompts; `read_files=False` checks attachments without reading them."""
        if self.format is PromptsFormat.csv:
            return self._reading(self._csv_prompts)
        return self._reading(lambda handle: self._line_prompts(handle, read_files))

    def _reading(self, read: Callable[[IO[str]], Iterator[_Item]]) -> Iterator[_Item]:
        """What `read` makes of the open dataset, its read errors raised as `CliError`s."""
        try:
            with self._open() as handle:
                yield from read(handle)
        except UnicodeDecodeError as exc:
            raise CliError(
                f"prompts file '{self.path}' is not UTF-8 text: {exc.reason}", EXIT_USAGE
            ) from None
        except OSError as exc:
            raise CliError(
                f"cannot read prompts file '{self.path}': {exc.strerror}", EXIT_USAGE
            ) from None

    def _open(self) -> IO[str]:
        if self._text is not None:
            return io.StringIO(self._text, newline=None)
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first line.
        return open(self.path, encoding="utf-8-sig", newline="")

    def _lines(self, handle: IO[str]) -> Iterator[str]:
        """The lines of `handle`, each read no further than the limit.

        Raises:
            CliError: a line is longer than `max_line`.
        """
        number = 0
        while line := handle.readline(self.max_line + 1):
            number += 1
            if len(line) > self.max_line and not line.endswith(("\n", "\r")):
                raise CliError(
                    f"{self.name} line {number} is longer than {_size(self.max_line)}, the "
                    "limit for a line of a dataset (raise it with --max-line-mib)",
                    EXIT_USAGE,
                )
            yield line

    def _texts(self, handle: IO[str]) -> Iterator[tuple[int, str]]:
        """The number and text (line end left out) of each line that is not blank."""
        for number, line in enumerate(self._lines(handle), start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, text

    def _line_prompts(self, handle: IO[str], read_files: bool) -> Iterator[Prompt]:
        for number, text in self._texts(handle):
            if self.format is PromptsFormat.jsonl:
                yield self._json_prompt(text, number, read_files)
            else:
                yield Prompt(str(number), number, [Message("user", text)])

    def _json_prompt(self, text: str, number: int, read_files: bool) -> Prompt:
        where = f"{self.name} line {number}"
        try:
            value = load_json(text, what=where, error=lambda message: CliError(message, EXIT_USAGE))
        except ValueError as exc:
            raise CliError(f"{where} is not valid JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(value, dict):
            return Prompt(str(number), number, _messages(value, where))
        column = self.column or "prompt"
        if (column in value) == ("messages" in value):
            raise CliError(f"{where}: give exactly one of '{column}' or 'messages'", EXIT_USAGE)
        messages = _messages(value["messages"] if "messages" in value else value[column], where)
        own = value.get("metadata", {})
        if not isinstance(own, dict):
            raise CliError(f"{where}: 'metadata' must be an object", EXIT_USAGE)
        others = {k: v for k, v in value.items() if k not in _LINE_KEYS and k != column}
        both = sorted(set(own) & set(others))
        if both:
            raise CliError(
                f"{where}: {both} given both as key(s) of the line and in its 'metadata'",
                EXIT_USAGE,
            )
        refused = None
        if "attachments" in value:
            messages, refused = self._attach(value["attachments"], messages, where, read_files)
        return Prompt(
            _prompt_id(value.get("id"), number, where),
            number,
            messages,
            self._params(value["params"], where) if "params" in value else None,
            _metadata({**own, **others}, where),
            refused,
        )

    def _attach(
        self, value: Any, messages: list[Message], where: str, read_files: bool
    ) -> tuple[list[Message], JibError | None]:
        """`messages` with the line's attachments added to the last user message (read only
        when `read_files`), and why the line may not be sent, if it may not.

        Raises:
            CliError: `attachments` is not a list of strings, the line has no user message, or
                an attachment is missing or of a type jib cannot send.
        """
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise CliError(
                f"{where}: 'attachments' must be a list of file paths (relative to the "
                "dataset's folder) or URLs",
                EXIT_USAGE,
            )
        last_user = next(
            (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None
        )
        if last_user is None:
            raise CliError(
                f"{where}: attachments go with a user message, and it has none", EXIT_USAGE
            )
        parts: list[ContentPart] = []
        for name in names:
            shown = f"{where}: attachment {name!r}"
            try:
                if is_url(name):
                    parts.append(part_from_url(name, shown))
                    continue
                path = self.allowances.resolve(name, self.folder, where)
                if read_files:
                    parts.append(part_from_file(path, shown))
                else:
                    checked_type(path, shown)
            except RefusedAttachmentError as exc:
                return messages, exc
            except AttachmentError as exc:
                if read_files:  # it was there when the dataset was opened: this line fails alone
                    return messages, exc
                raise CliError(str(exc), EXIT_USAGE) from None
        if not parts:
            return messages, None
        message = messages[last_user]
        attached = Message(
            "user", [*message.content_parts, *parts], cache_control=message.cache_control
        )
        return [*messages[:last_user], attached, *messages[last_user + 1 :]], None

    def _params(self, value: Any, where: str) -> GenerateParams:
        try:
            params = GenerateParams.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(part) for part in first["loc"]) or "params"
            problem = f"{location}: {first['msg']}"
            raise CliError(f"{where}: invalid params ({problem})", EXIT_USAGE) from None
        return params

    def refusal(self, prompt: Prompt, generator: Generator) -> JibError | None:
        """Why `prompt` may not go to `generator`, or None if it may.

        Its attachments may have been refused (or have become unreadable); its own params
        (data) are checked by `trust`, which asks `generator` which `extra` keys its provider
        accepts from data; the URLs of its parts by `allowances` when `generator` would fetch
        them from this machine (`jib.cli._dataset_files`).
        """
        if prompt.refused is not None:
            return prompt.refused
        where = f"{self.name} line {prompt.line}"
        if prompt.params is not None:
            try:
                self.trust.check_params(prompt.params, generator=generator, where=where)
            except UntrustedIdentifierError as exc:
                return exc
        return url_refusal(prompt.messages, generator, self.allowances, where)

    def _csv_prompts(self, handle: IO[str]) -> Iterator[Prompt]:
        csv.field_size_limit(self.max_line)  # process-wide (see the module docs)
        reader = csv.reader(self._lines(handle))
        try:
            yield from self._csv_rows(reader)
        except csv.Error as exc:
            where = f"{self.name} line {reader.line_num}"
            if "field larger than field limit" in str(exc):
                raise CliError(
                    f"{where}: a field is longer than {_size(self.max_line)}, the limit for a "
                    "field of a dataset (raise it with --max-line-mib)",
                    EXIT_USAGE,
                ) from None
            raise CliError(f"{where} is not valid CSV: {exc}", EXIT_USAGE) from None

    def _csv_rows(self, reader: Any) -> Iterator[Prompt]:
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        where = f"{self.name} line 1"
        repeated = sorted(name for name, count in Counter(header).items() if count > 1)
        if repeated or "" in header:
            problem = f"repeats {repeated}" if repeated else "has an empty column name"
            raise CliError(f"{where}: the header row {problem}", EXIT_USAGE)
        column = self._csv_column(header, where)
        end = reader.line_num
        for row in reader:
            number, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            where = f"{self.name} line {number}"
            if len(row) != len(header):
                raise CliError(
                    f"{where}: {len(row)} fields, but the header has {len(header)}", EXIT_USAGE
                )
            cells = dict(zip(header, row, strict=True))
            prompt = cells.pop(column)
            if not prompt.strip():
                raise CliError(f"{where}: the prompt (column {column!r}) is empty", EXIT_USAGE)
            raw_id = cells.pop("id", "").strip() if column != "id" else ""
            yield Prompt(
                _prompt_id(raw_id or None, number, where),
                number,
                [Message("user", prompt)],
                None,
                _metadata(cells, where),
            )

    def _csv_column(self, header: list[str], where: str) -> str:
        if self.column is not None:
            if self.column not in header:
                raise CliError(
                    f"{where}: no column {self.column!r} (--column); the columns are "
                    f"{_listed(header)}",
                    EXIT_USAGE,
                )
            return self.column
        if "prompt" in header:
            return "prompt"
        if len(header) == 1:
            return header[0]
        raise CliError(
            f"{where}: which column holds the prompt? None is named 'prompt'; pick one of "
            f"{_listed(header)} with --column NAME",
            EXIT_USAGE,
        )


_LISTED = 20


def _listed(names: list[str]) -> str:
    """`['a', 'b']`, or the first names and how many there are in all."""
    if len(names) <= _LISTED:
        return repr(names)
    return f"{names[:_LISTED]!r} … ({len(names):,} in all)"


def _size(characters: int) -> str:
    """`16 MiB (16,777,216 characters)`, or just the count when it is not whole MiB."""
    if characters % MIB == 0:
        return f"{characters // MIB} MiB ({characters:,} characters)"
    return f"{characters:,} characters"


def _messages(value: Any, where: str) -> list[Message]:
    if isinstance(value, dict) or not isinstance(value, (str, list)):
        raise CliError(
            f"{where}: expected a string, a list of messages, or an object with 'prompt' or "
            "'messages'",
            EXIT_USAGE,
        )
    try:
        messages = as_messages(value)
    except (TypeError, ValueError) as exc:
        raise CliError(f"{where}: {exc}", EXIT_USAGE) from None
    if not messages:
        raise CliError(f"{where}: the conversation has no messages", EXIT_USAGE)
    return messages


def _prompt_id(value: Any, number: int, where: str) -> str:
    if value is None:
        return str(number)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CliError(
            f"{where}: 'id' must be a string or an integer, not {json.dumps(value)}", EXIT_USAGE
        )
    text = str(value)
    if not text.strip() or len(text) > _MAX_ID:
        raise CliError(
            f"{where}: 'id' must be 1 to {_MAX_ID} characters, not {len(text)}", EXIT_USAGE
        )
    return text


def _metadata(values: dict[str, Any], where: str) -> dict[str, Any]:
    reserved = sorted(set(values) & set(_RESERVED))
    if reserved:
        raise CliError(
            f"{where}: {reserved} is set by jib run itself (the line's id and sample number); "
            "name the key differently",
            EXIT_USAGE,
        )
    return values
