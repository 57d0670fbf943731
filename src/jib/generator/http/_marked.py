"""Jinja templates built from copied text: literal text kept exactly, a marker replaced by an
expression.

Copied text is data, not a template: a `{{` in it must reach the server as written, and Jinja
would also turn its `\\r\\n` into `\\n` and drop a final line break. Literal pieces that Jinja
would change are written as string literals (`{{ "…" }}`); the rest stay as they are, so a spec
made from a copy reads like the copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Expression", "Marked", "Piece", "escaped_json_string", "split_marked", "template"]

# `$name` and `$a.b` are references in a JSON template (see `fill_json_template`).
_REFERENCE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(eq=False)
class Expression:
    """A Jinja expression (`content | urlencode`) to put where a marker was (set later for a
    secret, whose name is known once every secret of the copy is found)."""

    source: str


Piece = str | Expression


@dataclass(frozen=True)
class Marked:
    """A JSON template string made of pieces (rendered by `template`)."""

    pieces: tuple[Piece, ...]


def split_marked(text: str, marker: str, expression: Expression) -> list[Piece]:
    """`text` as literal pieces with `expression` in place of each `marker`."""
    pieces: list[Piece] = []
    for index, literal in enumerate(text.split(marker)):
        if index:
            pieces.append(expression)
        if literal:
            pieces.append(literal)
    return pieces


def template(pieces: Sequence[Piece]) -> str:
    """The Jinja template rendering `pieces`: expressions evaluated, literals exactly."""
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if isinstance(piece, Expression):
            out.append(f"{{{{ {piece.source} }}}}")
        else:
            out.append(_literal(piece, last=index == len(pieces) - 1))
    return "".join(out)


def _literal(text: str, *, last: bool) -> str:
    if "{" in text or "\r" in text or (last and text.endswith("\n")):
        # A Jinja string literal: JSON's escapes are also Jinja's (unicode-escape).
        return f"{{{{ {json.dumps(text, ensure_ascii=False)} }}}}"
    return text


def escaped_json_string(text: str) -> str:
    """A string of a JSON template that gives `text` exactly: one Jinja would render or read as
    a `$` reference is written as a template of itself."""
    if "{{" in text or "{%" in text or _REFERENCE.fullmatch(text):
        return f"{{{{ {json.dumps(text, ensure_ascii=False)} }}}}"
    return text
