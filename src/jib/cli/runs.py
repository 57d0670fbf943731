"""`jib runs`: the stored runs, newest first, with their generators, chats, failures and cost."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from jib.cli._common import StoreOption, err_console, handle_errors, open_cli_store, out_console
from jib.cli._figures import format_cost, wrap_identifier
from jib.cli._terminal import printable

__all__ = ["runs_command"]

_GENERATOR_WIDTH = 30


def runs_command(
    number: Annotated[
        int, typer.Option("-n", "--number", min=1, metavar="N", help="How many to show.")
    ] = 20,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of the runs instead of a table.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """List the stored runs, newest first: when, generators, chats, failed and cost.

    Stored records that cannot be read are counted in an `unreadable` column (shown when there
    are any) and left out of the other figures but `chats`.
    """
    with handle_errors(), open_cli_store(store) as chat_store:
        runs = chat_store.runs()[:number]
        if json_output:
            typer.echo(json.dumps([_jsonable(run) for run in runs], ensure_ascii=False, indent=2))
            return
        if not runs:
            out_console.print(
                f"No runs are stored in {chat_store.url}. Try: "
                "jib run 'echo!demo' --prompts examples/prompts.txt --run first",
                markup=False,
            )
            return
        out_console.print(_table(runs))
        if any(run["unreadable"] for run in runs):
            err_console.print(
                "note: some stored records cannot be read; `jib log --run NAME` names them "
                "(docs/storage.md)",
                markup=False,
                highlight=False,
            )


def _jsonable(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **run,
        "first": run["first"].isoformat() if run["first"] else None,
        "last": run["last"].isoformat() if run["last"] else None,
    }


def _table(runs: list[dict[str, Any]]) -> Table:
    unreadable = any(run["unreadable"] for run in runs)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run", overflow="fold")
    table.add_column("last (UTC)", no_wrap=True)
    table.add_column("generators", overflow="fold")
    for name in ("chats", "failed", "cost", *(("unreadable",) if unreadable else ())):
        table.add_column(name, justify="right", no_wrap=True)
    for run in runs:
        generators = "\n".join(
            printable(wrap_identifier(g, _GENERATOR_WIDTH)) for g in run["generators"]
        )
        failed = run["failed"]
        cells: list[Text | str] = [
            Text(printable(run["run"])),
            run["last"].strftime("%Y-%m-%d %H:%M") if run["last"] else "–",
            Text(generators or "–"),
            str(run["records"]),
            Text(str(failed), style="red" if failed else ""),
            format_cost(run["cost_usd"]) if run["priced"] else "–",
        ]
        if unreadable:
            cells.append(Text(str(run["unreadable"]), style="red" if run["unreadable"] else ""))
        table.add_row(*cells)
    return table
