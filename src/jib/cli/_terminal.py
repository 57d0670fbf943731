"""Text from models and stores made safe to print on a terminal.

A model's answer, a stored record or a server's error message is data: `\\x1b[2J` in it would
clear the user's screen and `\\x1b]0;…\\x07` retitle the window (or worse, on terminals that take
more escape sequences), and a right-to-left override (U+202E) would show text in another order
than it is. Every command that prints such text in plain form passes it through `printable`,
which shows each control character as a visible escape (`\\x1b`, `\\u202e`) instead of sending
it to the terminal. Newlines and tabs are kept; `--json` output is escaped by JSON itself and
keeps the exact text.

Data is never read as Rich markup either (`[link=…]` would make a clickable link, `[bold]`
restyle the screen): it reaches Rich as a `rich.text.Text` (never parsed as markup) — table
titles, column headers and panel titles included — or through `print(…, markup=False)`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["printable", "printable_data"]

# C0 controls except tab and newline, DEL, the C1 controls (U+0080-U+009F: U+009B is a
# one-character CSI on terminals that read C1 codes), and the bidirectional controls: marks
# (U+200E/F, U+061C), embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""`text` with control characters shown as `\xNN` (or `\uNNNN`) escapes (newline and tab
    kept; a Windows line end is a newline).

    >>> printable("ok\x1b[2J\x1b]0;PWNED\x07 done\r\n")
    'ok\\x1b[2J\\x1b]0;PWNED\\x07 done\n'
    >>> printable("invoice_\u202etxt.exe")
    'invoice_\\u202etxt.exe'
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_visible, text.replace("\r\n", "\n"))


def printable_data(value: Any) -> Any:
    r"""A copy of `value` (a record as a dict, say) with every string in it, keys too, made
    `printable`; tuples become lists. Walked without recursion, so deep metadata is no problem.

    >>> printable_data({"answer": "\x1b[2J", "tags": ["\x07"], "n": 1})
    {'answer': '\\x1b[2J', 'tags': ['\\x07'], 'n': 1}
    """
    root: list[Any] = [None]
    pending: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (source, target, slot)
    while pending:
        source, target, slot = pending.pop()
        if isinstance(source, str):
            target[slot] = printable(source)
        elif isinstance(source, dict):
            copied: dict[Any, Any] = {}
            target[slot] = copied
            for key, item in source.items():
                shown = printable(key) if isinstance(key, str) else key
                copied[shown] = None
                pending.append((item, copied, shown))
        elif isinstance(source, (list, tuple)):
            items: list[Any] = [None] * len(source)
            target[slot] = items
            pending.extend((item, items, index) for index, item in enumerate(source))
        else:
            target[slot] = source
    return root[0]
