"""`jib batches`: the provider batches `jib run --batch-api` is waiting on; cancel them."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from jib.cli._common import (
    EXIT_USAGE,
    AllowEnvOption,
    AllowHostOption,
    StoreOption,
    fail,
    handle_errors,
    open_cli_store,
    out_console,
    trust_policy,
)
from jib.cli._terminal import printable

if TYPE_CHECKING:
    from jib.batch_api import JournalEntry
    from jib.trust import TrustPolicy

__all__ = ["batches_command"]


def batches_command(
    run: Annotated[
        str | None,
        typer.Option(
            "--run", "-r", metavar="NAME", help="Only this run's batches.", show_default=False
        ),
    ] = None,
    all_batches: Annotated[
        bool,
        typer.Option("--all", help="Also the batches whose results are stored."),
    ] = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Ask each provider for its batches' state now."),
    ] = False,
    cancel: Annotated[
        list[str] | None,
        typer.Option(
            "--cancel",
            metavar="BATCH_ID",
            help="Ask the provider to cancel this batch (repeatable); `jib run --resume` then "
            "runs what it did not answer.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON array instead of a table.")
    ] = False,
    store: StoreOption = None,
    allow_env: AllowEnvOption = None,
    allow_host: AllowHostOption = None,
) -> None:
    """List the provider batches of `jib run --batch-api` still in flight (state, requests,
    run), or cancel some.

    The generator of a batch is rebuilt from the identifier stored with it, which is data: its
    key comes from the provider's usual environment variable, and --allow-env / --allow-host
    say what else it may use.
    """
    from jib.storage import ProviderBatchJournal

    with handle_errors(), open_cli_store(store) as chat_store:
        journal = ProviderBatchJournal(chat_store)
        policy = trust_policy(allow_env, allow_host, False)
        if cancel:
            for batch_id in cancel:
                found = journal.entries(batch_id=batch_id)
                if not found:
                    fail(
                        f"no batch {batch_id!r} is stored in {chat_store.url} (see `jib batches "
                        "--all`)",
                        EXIT_USAGE,
                    )
                entry = found[-1]
                status = asyncio.run(_cancel(entry, policy))
                journal.update(entry.key, status)
                out_console.print(f"{entry.batch_id}: {status}", markup=False, highlight=False)
            return
        entries = journal.entries(run=run, collected=None if all_batches else False)
        if refresh:
            states = asyncio.run(_states(entries, policy))
            for entry, state in zip(entries, states, strict=True):
                if state is not None and state != entry.status:
                    journal.update(entry.key, state)
            entries = journal.entries(run=run, collected=None if all_batches else False)
        if json_output:
            typer.echo(json.dumps([_jsonable(e) for e in entries], indent=2))
            return
        if not entries:
            out_console.print(
                f"No provider batches in flight in {chat_store.url}"
                + ("" if all_batches else " (see them all with --all)"),
                markup=False,
                highlight=False,
            )
            return
        out_console.print(_table(entries))


def _jsonable(entry: JournalEntry) -> dict[str, Any]:
    return {
        "batch_id": entry.batch_id,
        "provider": entry.provider,
        "status": entry.status,
        "requests": len(entry.custom_ids),
        "run": entry.run,
        "generator": entry.generator_id,
        "endpoint": entry.endpoint,
        "input_file_id": entry.input_file_id,
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
        "collected": entry.collected,
    }


def _table(entries: list[JournalEntry]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("batch", "provider", "status", "requests", "run", "submitted", "generator"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    now = datetime.now(timezone.utc)
    for entry in entries:
        age = now - entry.created_at
        minutes = int(age.total_seconds() // 60)
        ago = f"{minutes // 60}h{minutes % 60:02d}m ago" if minutes >= 60 else f"{minutes}m ago"
        status = entry.status + (" (stored)" if entry.collected else "")
        table.add_row(
            printable(entry.batch_id),
            entry.provider,
            printable(status),
            str(len(entry.custom_ids)),
            printable(entry.run or ""),
            ago,
            printable(entry.generator_id),
        )
    return table


def _client(entry: JournalEntry, policy: TrustPolicy) -> Any:
    from jib.batch_api import batch_api_client
    from jib.identifiers import get_generator

    return batch_api_client(get_generator(entry.generator_id, trusted=policy))


async def _cancel(entry: JournalEntry, policy: TrustPolicy) -> str:
    client = _client(entry, policy)
    try:
        state = await client.cancel(entry.batch_id)
    finally:
        await client.aclose()
    return str(state.status)


async def _states(entries: list[JournalEntry], policy: TrustPolicy) -> list[str | None]:
    found: list[str | None] = []
    for entry in entries:
        if entry.collected:
            found.append(None)
            continue
        client = _client(entry, policy)
        try:
            found.append((await client.state(entry.batch_id)).status)
        finally:
            await client.aclose()
    return found
