"""`jib export`: stored chats to JSON Lines, CSV or Parquet."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jib.cli._common import (
    EXIT_USAGE,
    StoreOption,
    err_console,
    fail,
    handle_errors,
    open_cli_store,
    require_run,
)
from jib.cli._skipped import counting_unreadable

if TYPE_CHECKING:
    from jib.storage import FilterArgs

__all__ = ["ExportFormat", "export_command"]


class ExportFormat(str, Enum):
    """The formats `jib export` writes."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


def export_command(
    run: Annotated[
        str | None, typer.Option("--run", "-r", metavar="NAME", help="Only this run.")
    ] = None,
    format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-F",
            help="jsonl, csv or parquet. Default: from the --output suffix, else jsonl.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="File to write. Default: stdout (jsonl and csv only).",
            show_default=False,
        ),
    ] = None,
    failed: Annotated[
        bool | None,
        typer.Option("--failed/--ok", help="Only failed chats, or only successful ones."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", metavar="MODEL", help="Only this model.")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", metavar="TAG", help="Only this tag.")
    ] = None,
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            help="Write CSV cells exactly as stored. By default a cell a spreadsheet would run "
            "as a formula (starting with = + - @, a tab or a carriage return) gets a leading ' "
            "(docs/security.md).",
        ),
    ] = False,
    parts_as_files: Annotated[
        bool,
        typer.Option(
            "--parts-as-files",
            help="JSON Lines only: write each image, audio clip or document once, as a file in "
            "a folder beside --output (r.jsonl → r.files/), instead of inline as data: URLs.",
        ),
    ] = False,
    store: StoreOption = None,
) -> None:
    """Export stored chats: JSON Lines (loadable with Chat.from_jsonl), CSV or Parquet.

    A stored record that cannot be read is skipped; a note on stderr counts and names it.
    """
    with handle_errors():
        chosen = format
        if chosen is None:
            suffix = output.suffix.lower().lstrip(".") if output else ""
            chosen = (
                ExportFormat(suffix) if suffix in ExportFormat.__members__ else ExportFormat.jsonl
            )
        if chosen is ExportFormat.parquet and output is None:
            fail("parquet is binary: give a file with --output FILE.parquet", EXIT_USAGE)
        if raw_csv and chosen is not ExportFormat.csv:
            fail(f"--raw-csv is for --format csv, not {chosen.value}", EXIT_USAGE)
        if parts_as_files and (chosen is not ExportFormat.jsonl or output is None):
            fail(
                "--parts-as-files writes files beside a JSON Lines export: give "
                "--output FILE.jsonl",
                EXIT_USAGE,
            )
        with open_cli_store(store) as chat_store, counting_unreadable(err_console) as skipped:
            if run is not None:
                require_run(chat_store, run)
            destination = output if output is not None else sys.stdout
            filters: FilterArgs = {"run": run, "failed": failed, "model": model, "tag": tag}
            if chosen is ExportFormat.csv:
                count = chat_store.export_csv(destination, escape_formulas=not raw_csv, **filters)
            elif chosen is ExportFormat.parquet:
                count = chat_store.export_parquet(destination, **filters)
            else:
                count = chat_store.export_jsonl(
                    destination, parts_as_files=parts_as_files, **filters
                )
            where = str(output) if output else "stdout"
            unreadable = f" ({skipped.summary()})" if skipped.count else ""
            err_console.print(
                f"exported {count} records as {chosen.value} to {where}{unreadable}",
                markup=False,
                highlight=False,
            )
