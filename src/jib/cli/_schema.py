"""`jib run --schema FILE|JSON`: ask for JSON that fits a JSON Schema, and check each answer.

The schema (a JSON object, given inline or as a `.json`/`.yaml` file) is checked once against
its own metaschema (the draft its `$schema` names, 2020-12 by default) with the `jsonschema`
package, and sent as `response_format` (`{"type": "json_schema", "json_schema": {"name",
"schema"}}`; LiteLLM writes it in each provider's own form). Each answer is then parsed as JSON
— the whole text, or one fenced code block that is the whole text (`` ```json … ``` ``) — and
validated: a valid answer's value becomes the chat's `output`; an answer that is not JSON or
does not validate keeps `output` empty and gets the first problem in `chat.extra["schema_error"]`
(it is still an answer, not a failure). `$ref`s resolve within the schema only: nothing is
fetched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jib._json import loads as load_json
from jib.cli._common import EXIT_USAGE, fail
from jib.cli._option_files import load_json_or_yaml, read_option_file

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from jib.chat import Chat

__all__ = ["SCHEMA_ERROR", "AnswerSchema"]

SCHEMA_ERROR = "schema_error"
"""The key of `Chat.extra` holding why an answer does not fit the schema."""

_MAX_FILE = 4_000_000
_SHOWN = 300
_FENCED = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```", re.DOTALL)
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class AnswerSchema:
    """A JSON Schema the answers of a run must fit, checked and ready to validate with.

    Attributes:
        schema: the JSON Schema.
        name: its name in `response_format` (its `title`, else the file's name, else `answer`;
            letters, digits, `_` and `-`, as providers require).
    """

    schema: dict[str, Any]
    name: str
    _validator: Validator

    @classmethod
    def load(cls, value: str) -> AnswerSchema:
        """The schema `--schema` gives: JSON text (starting with `{`), or a file holding JSON or
        YAML.

        Raises:
            CliError: no such file, not JSON/YAML, not an object, or not a valid JSON Schema
                (the message names the file and the problem).
        """
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        inline = value.lstrip().startswith("{")
        text, shown, stem = value, "--schema", ""
        if not inline:
            path = Path(value).expanduser()
            shown, stem = f"--schema {value}", path.stem
            text = read_option_file(path, shown)
        schema = load_json_or_yaml(text, shown, yaml_too=not inline)
        if not isinstance(schema, dict):
            fail(f'{shown} must be a JSON Schema object ({{"type": "object", …}})', EXIT_USAGE)
        validator_class = validator_for(schema)
        try:
            validator_class.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(part) for part in exc.path)
            fail(
                f"{shown} is not a valid JSON Schema: {_cut(exc.message)}"
                + (f" (at {where})" if where else ""),
                EXIT_USAGE,
            )
        title = schema.get("title")
        name = _NAME.sub("_", title if isinstance(title, str) and title.strip() else stem)
        name = name.strip("_")[:64] or "answer"
        return cls(schema, name, validator_class(schema))

    @property
    def response_format(self) -> dict[str, Any]:
        """What to send as `response_format`."""
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema}}

    def check(self, text: str) -> tuple[Any, str | None]:
        """The value `text` holds and `None`, or `None` and why it does not fit the schema."""
        body = text.strip()
        fenced = _FENCED.fullmatch(body)
        if fenced is not None:
            body = fenced.group(1)
        try:
            value = load_json(body, what="the answer", error=ValueError)
        except ValueError as exc:  # json.JSONDecodeError too
            problem = str(exc) if not isinstance(exc, json.JSONDecodeError) else exc.msg
            return None, f"the answer is not JSON ({_cut(problem)})"
        from jsonschema.exceptions import best_match
        from referencing.exceptions import Unresolvable

        try:
            error = best_match(self._validator.iter_errors(value))
        except Unresolvable as exc:
            return None, f"the schema refers to what it does not hold ({_cut(str(exc))})"
        if error is None:
            return value, None
        return None, f"{error.json_path}: {_cut(error.message)}"

    def apply(self, chat: Chat) -> bool:
        """Validate `chat`'s answer: set its `output`, or note why not (see the module docs).

        Returns whether it fits.
        """
        value, problem = self.check(chat.content)
        if problem is None:
            chat.output = value
            chat.extra.pop(SCHEMA_ERROR, None)
            return True
        chat.extra[SCHEMA_ERROR] = problem
        return False


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
