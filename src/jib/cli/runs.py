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
        _add_cache_stats(runs, store)
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


def _add_cache_stats(runs: list[dict[str, Any]], store: str | None) -> None:
    """Put the response cache's hits, misses and saved cost on each run that used it
    (`jib run --cache` with the cache kept in this store)."""
    from jib.storage._response_cache import response_cache_run_stats

    counted = response_cache_run_stats(store)
    for run in runs:
        found = counted.get(run["run"])
        if found is not None:
            run["cache_hits"] = found.hits
            run["cache_misses"] = found.misses
            run["cache_saved_usd"] = found.saved_usd


def _jsonable(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **run,
        "first": run["first"].isoformat() if run["first"] else None,
        "last": run["last"].isoformat() if run["last"] else None,
    }


def _cache_cells(run: dict[str, Any]) -> list[Text | str]:
    """`cached`: hits of the run's requests (of hits + misses); `saved`: what the hits saved."""
    if "cache_hits" not in run:
        return ["–", "–"]
    hits, misses = run["cache_hits"], run["cache_misses"]
    saved = run["cache_saved_usd"]
    return [f"{hits}/{hits + misses}", format_cost(saved) if saved else "–"]


def _table(runs: list[dict[str, Any]]) -> Table:
    unreadable = any(run["unreadable"] for run in runs)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run", overflow="fold")
    table.add_column("last (UTC)", no_wrap=True)
    table.add_column("generators", overflow="fold")
    cached = any("cache_hits" in run for run in runs)
    names = ("chats", "failed", "cost", *(("cached", "saved") if cached else ()))
    for name in (*names, *(("unreadable",) if unreadable else ())):
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
        if cached:
            cells += _cache_cells(run)
        if unreadable:
            cells.append(Text(str(run["unreadable"]), style="red" if run["unreadable"] else ""))
        table.add_row(*cells)
    return table
