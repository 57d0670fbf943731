"""Reading a prompts file: `.txt` (one prompt per line) or `.jsonl` (one conversation per line).

A `.jsonl` line is one of:

- a string: one user message;
- a list of messages (`{"role": …, "content": …}` objects or strings);
- an object with `"prompt"` (a string) or `"messages"` (a list as above), and optionally
  `"params"` (generation params for this line only, e.g. `{"temperature": 0.7}`).

Blank lines are skipped in both formats. Files are read lazily, so a large file is never held
in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jib._json import loads as load_json
from jib.cli._common import EXIT_USAGE, CliError
from jib.errors import UntrustedIdentifierError
from jib.messages import Message, as_messages
from jib.params import GenerateParams
from jib.trust import TrustPolicy

__all__ = ["Prompt", "PromptsFile"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt of the file: its line number, messages, and params of its own (if any)."""

    line: int
    messages: list[Message]
    params: GenerateParams | None = None


class PromptsFile:
    """A prompts file, checked once when opened; iterate it (again) to stream its prompts.

    A line's params are data: `trust` (default: `TrustPolicy.from_env()`) decides whether their
    `extra` may send the request elsewhere, read a variable or run code (see `jib.trust`).

    Raises:
        CliError: the file is missing or unreadable, has no prompts, or a line is malformed or
            has params `trust` refuses (the message names the line).
    """

    def __init__(self, path: Path, trust: TrustPolicy | None = None) -> None:
        self.path = path
        self.trust = trust if trust is not None else TrustPolicy.from_env()
        self.jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
        if not path.exists():
            raise CliError(f"prompts file '{path}' not found", EXIT_USAGE)
        if not path.is_file():
            raise CliError(f"prompts file '{path}' is not a file", EXIT_USAGE)
        self.count = sum(1 for _ in self)
        if self.count == 0:
            raise CliError(f"prompts file '{path}' has no prompts", EXIT_USAGE)

    def __iter__(self) -> Iterator[Prompt]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    text = line.rstrip("\r\n")
                    if not text.strip():
                        continue
                    if self.jsonl:
                        yield self._parse_json_line(text, number)
                    else:
                        yield Prompt(number, [Message("user", text)])
        except UnicodeDecodeError as exc:
            raise CliError(
                f"prompts file '{self.path}' is not UTF-8 text: {exc.reason}", EXIT_USAGE
            ) from None
        except OSError as exc:
            raise CliError(
                f"cannot read prompts file '{self.path}': {exc.strerror}", EXIT_USAGE
            ) from None

    def _parse_json_line(self, text: str, number: int) -> Prompt:
        where = f"{self.path.name} line {number}"
        try:
            value = load_json(text, what=where, error=lambda message: CliError(message, EXIT_USAGE))
        except ValueError as exc:
            raise CliError(f"{where} is not valid JSON: {exc}", EXIT_USAGE) from None
        params: GenerateParams | None = None
        raw_messages: Any = value
        if isinstance(value, dict):
            unknown = set(value) - {"prompt", "messages", "params"}
            if unknown:
                raise CliError(
                    f"{where}: unknown key(s) {sorted(unknown)}; expected 'prompt' or "
                    "'messages', and optionally 'params'",
                    EXIT_USAGE,
                )
            if ("prompt" in value) == ("messages" in value):
                raise CliError(f"{where}: give exactly one of 'prompt' or 'messages'", EXIT_USAGE)
            raw_messages = value.get("messages", value.get("prompt"))
            if "params" in value:
                try:
                    params = GenerateParams.model_validate(value["params"])
                except ValidationError as exc:
                    first = exc.errors()[0]
                    location = ".".join(str(part) for part in first["loc"]) or "params"
                    raise CliError(
                        f"{where}: invalid params ({location}: {first['msg']})", EXIT_USAGE
                    ) from None
                try:
                    self.trust.check_params(params, where=where)
                except UntrustedIdentifierError as exc:
                    raise CliError(str(exc), EXIT_USAGE) from None
        if isinstance(raw_messages, dict) or not isinstance(raw_messages, (str, list)):
            raise CliError(
                f"{where}: expected a string, a list of messages, or an object with 'prompt' "
                "or 'messages'",
                EXIT_USAGE,
            )
        try:
            messages = as_messages(raw_messages)
        except (TypeError, ValueError) as exc:
            raise CliError(f"{where}: {exc}", EXIT_USAGE) from None
        if not messages:
            raise CliError(f"{where}: the conversation has no messages", EXIT_USAGE)
        return Prompt(number, messages, params)
