"""`jib export`: stored chats to JSON Lines, CSV or Parquet."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

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
    store: StoreOption = None,
) -> None:
    """Export stored chats: JSON Lines (loadable with Chat.from_dict), CSV or Parquet."""
    with handle_errors():
        chosen = format
        if chosen is None:
            suffix = output.suffix.lower().lstrip(".") if output else ""
            chosen = (
                ExportFormat(suffix) if suffix in ExportFormat.__members__ else ExportFormat.jsonl
            )
        if chosen is ExportFormat.parquet and output is None:
            fail("parquet is binary: give a file with --output FILE.parquet", EXIT_USAGE)
        with open_cli_store(store) as chat_store:
            if run is not None:
                require_run(chat_store, run)
            writer = {
                ExportFormat.jsonl: chat_store.export_jsonl,
                ExportFormat.csv: chat_store.export_csv,
                ExportFormat.parquet: chat_store.export_parquet,
            }[chosen]
            destination = output if output is not None else sys.stdout
            count = writer(destination, run=run, failed=failed, model=model, tag=tag)
        where = str(output) if output else "stdout"
        err_console.print(f"exported {count} records as {chosen.value} to {where}", markup=False)
