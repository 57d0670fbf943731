"""`jib cache`: what jib's response cache holds (size, hits, entries per generator), and
clearing or pruning it (by age, generator, run).

The response cache keeps answers `jib run --cache` and `jib chat --cache` got, to answer the
same requests again for free; it is not the provider's prompt cache (see
docs/response_cache.md).
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from jib.cli._common import EXIT_USAGE, fail, handle_errors, out_console
from jib.cli._figures import format_cost, wrap_identifier
from jib.cli._terminal import printable

if TYPE_CHECKING:
    from jib.storage import ResponseCache

__all__ = ["cache_app"]

_GENERATOR_WIDTH = 40

cache_app = typer.Typer(
    help="jib's response cache (answers kept by --cache): show it, clear or prune it.",
    no_args_is_help=False,
    invoke_without_command=True,
    rich_markup_mode=None,
)

CacheLocation = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL|PATH",
        help="Where the cache is: the database given to --cache-store, else the store "
        "(default: $JIB_STORE, else ~/.local/share/jib/jib.db).",
        show_default=False,
    ),
]


def _open(location: str | None) -> ResponseCache:
    from jib.storage import open_response_cache

    return open_response_cache(location)


@cache_app.callback()
def cache_callback(
    context: typer.Context,
    store: CacheLocation = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, one object per generator.")
    ] = False,
) -> None:
    """Show the response cache: entries, size, hits, misses and cost saved per generator.

    \b
    Examples:
      jib cache
      jib cache clear --older-than 30d
      jib cache clear --generator 'openai!gpt-4o-mini'
    """
    if context.invoked_subcommand is not None:
        context.obj = store  # `jib cache --store X clear` clears X
        return
    with handle_errors():
        cache = _open(store)
        try:
            rows = cache.summary()
            url = cache.url
        finally:
            cache.close()
    if json_output:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        out_console.print(
            f"The response cache in {url} is empty. Fill it with: jib run ID --prompts FILE "
            "--cache",
            markup=False,
        )
        return
    out_console.print(_table(rows))
    entries = sum(row["entries"] for row in rows)
    size = sum(row["bytes"] for row in rows)
    out_console.print(f"{entries:,} answers, {_size(size)} in {url}", markup=False, highlight=False)


@cache_app.command("clear")
def clear_command(
    context: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Only answers kept longer ago than this (90s, 15m, 12h, 7d, 2w).",
            show_default=False,
        ),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            "-g",
            metavar="ID",
            help="Only this generator's answers (its identifier as `jib cache` shows it, or "
            "as given to `jib run`).",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            metavar="NAME",
            help="Only the answers first kept by this run.",
            show_default=False,
        ),
    ] = None,
    store: CacheLocation = None,
) -> None:
    """Delete kept answers: all of them, or those --older-than, of a --generator or a --run
    (the conditions given all apply). The chats stored by runs are not touched."""
    with handle_errors():
        seconds = None
        if older_than is not None:
            from jib.cli._durations import parse_duration

            try:
                seconds = parse_duration(older_than, "--older-than")
            except ValueError as exc:
                fail(str(exc), EXIT_USAGE)
        cache = _open(store or context.obj)
        try:
            deleted = cache.clear(older_than=seconds, generator=generator, run=run)
            url = cache.url
        finally:
            cache.close()
    out_console.print(
        f"deleted {deleted:,} answers from the response cache in {url}",
        markup=False,
        highlight=False,
    )


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("generator", overflow="fold")
    for name in ("entries", "size", "hits", "misses", "saved", "newest (UTC)"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(printable(wrap_identifier(row["generator"], _GENERATOR_WIDTH))),
            f"{row['entries']:,}",
            _size(row["bytes"]),
            f"{row['hits']:,}",
            f"{row['misses']:,}",
            format_cost(row["saved_usd"]) if row["saved_usd"] else "–",
            _when(row["newest"]),
        )
    return table


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M")
