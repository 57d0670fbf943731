"""Text from models and stores made safe to print on a terminal.

A model's answer, a stored record or a server's error message is data: `\\x1b[2J` in it would
clear the user's screen and `\\x1b]0;…\\x07` retitle the window (or worse, on terminals that take
more escape sequences). Every command that prints such text in plain form passes it through
`printable`, which shows each control character as a visible escape (`\\x1b`) instead of
sending it to the terminal. Newlines and tabs are kept; `--json` output is escaped by JSON
itself and keeps the exact text.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["printable", "printable_data"]

# C0 controls except tab and newline, DEL, and the C1 controls (U+0080-U+009F: U+009B is a
# one-character CSI on terminals that read C1 codes).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    r"""`text` with control characters shown as `\xNN` escapes (newline and tab kept; a
    Windows line end is a newline).

    >>> printable("ok\x1b[2J\x1b]0;PWNED\x07 done\r\n")
    'ok\\x1b[2J\\x1b]0;PWNED\\x07 done\n'
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
