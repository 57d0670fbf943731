"""Stored records a command skipped because they cannot be read, counted in one note.

The store skips a record it cannot read with an `UnreadableRecordWarning` (see
`jib.storage._load`). A command reading the store does so inside `counting_unreadable()`, which
collects those warnings instead of printing each, and then says once, on stderr, how many were
skipped, which, and why — so the output (a table, JSON, an export) stays clean and the count
is never lost. Other warnings pass through as they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console

from jib.chat import UnreadableRecordWarning
from jib.cli._terminal import printable

__all__ = ["Skipped", "counting_unreadable"]

_LISTED = 5
"""Skipped records named one by one in the note; the rest are counted."""


@dataclass(slots=True)
class Skipped:
    """The unreadable records skipped so far."""

    warnings: list[UnreadableRecordWarning] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many records were skipped."""
        return len(self.warnings)

    def summary(self) -> str:
        """`1 unreadable record skipped` (empty when none was)."""
        if not self.warnings:
            return ""
        noun = "record" if self.count == 1 else "records"
        return f"{self.count} unreadable {noun} skipped"

    def note(self) -> str:
        """What to tell the user: how many, which and why (empty when none was skipped)."""
        if not self.warnings:
            return ""
        verb = "cannot be read and was" if self.count == 1 else "cannot be read and were"
        noun = "stored record" if self.count == 1 else "stored records"
        lines = [f"note: {self.count} {noun} {verb} skipped:"]
        for warning in self.warnings[:_LISTED]:
            name = warning.record_id or "(no id)"
            lines.append(f"  {printable(name)}: {printable(warning.reason)}")
        if self.count > _LISTED:
            lines.append(f"  … and {self.count - _LISTED} more")
        return "\n".join(lines)


@contextmanager
def counting_unreadable(console: Console) -> Iterator[Skipped]:
    """Collect the `UnreadableRecordWarning`s raised inside, then print their note to `console`.

    The note is printed also when the command stops early (an error after some records were
    read), so a skipped record is never silent.
    """
    skipped = Skipped()
    with warnings.catch_warnings():
        warnings.simplefilter("always", UnreadableRecordWarning)
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if isinstance(message, UnreadableRecordWarning):
                skipped.warnings.append(message)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield skipped
        finally:
            if skipped.count:
                console.print(skipped.note(), markup=False, highlight=False, soft_wrap=True)
