"""`jib log` (recent chats) and `jib show` (one conversation)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jib.cli._common import StoreOption, handle_errors, open_cli_store, out_console

__all__ = ["log_command", "show_command"]

_ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def _preview(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _prompt_and_answer(data: dict[str, Any]) -> tuple[str, str]:
    if data["kind"] == "chat":
        sent, generated = data["messages"], data["generated"]
        prompt = sent[-1]["content"] if sent else ""
        answer = generated[-1]["content"] if generated else ""
        return prompt, answer
    return data["text"], data["generated"]


def _params_text(params: dict[str, Any] | None) -> str:
    shown = {k: v for k, v in (params or {}).items() if not (k == "extra" and not v)}
    return json.dumps(shown, ensure_ascii=False) if shown else "–"


def _when(data: dict[str, Any]) -> str:
    moment = datetime.fromisoformat(data["timestamp"])
    return moment.strftime("%Y-%m-%d %H:%M")


def log_command(
    number: Annotated[
        int, typer.Option("-n", "--number", min=1, metavar="N", help="How many to show.")
    ] = 20,
    run: Annotated[
        str | None, typer.Option("--run", "-r", metavar="NAME", help="Only this run.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed chats.")] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Only this model (e.g. gpt-4o-mini or echo!demo).",
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", metavar="TAG", help="Only chats with this tag.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of the records instead of a table.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """List the most recent stored chats, newest first."""
    with handle_errors(), open_cli_store(store) as chat_store:
        records = list(
            chat_store.iter_dicts(
                newest_first=True,
                limit=number,
                run=run,
                model=model,
                tag=tag,
                failed=True if failed else None,
            )
        )
        if json_output:
            typer.echo(json.dumps(records, ensure_ascii=False, indent=2))
            return
        if not records:
            if run or failed or model or tag:
                message = f"No stored chats match in {chat_store.url}."
            else:
                message = (
                    f"No chats are stored yet in {chat_store.url}. Try: "
                    "jib run 'echo!demo' --prompts examples/prompts.txt"
                )
            out_console.print(message, markup=False)
            return
        table = Table(box=None, pad_edge=False)
        table.add_column("id", no_wrap=True, min_width=12)
        table.add_column("time (UTC)", no_wrap=True, min_width=16)
        table.add_column("run", no_wrap=True, min_width=3, max_width=24, overflow="ellipsis")
        table.add_column("generator", no_wrap=True, min_width=9, max_width=40, overflow="ellipsis")
        table.add_column("status", no_wrap=True, min_width=6)
        table.add_column("tokens", no_wrap=True, min_width=6, justify="right")
        table.add_column("prompt", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")
        table.add_column("answer", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")
        for data in records:
            prompt, answer = _prompt_and_answer(data)
            status = (
                Text("failed", style="red")
                if data["failed"]
                else Text(data["stop_reason"], style="green")
            )
            usage = data["usage"] or {}
            if data["failed"] and data["error"]:
                answer = f"{data['error']['type']}: {data['error']['message']}"
            table.add_row(
                data["id"][:12],
                _when(data),
                Text(data["run"] or "–"),
                Text(data["generator_id"] or "–"),
                status,
                str(usage.get("total_tokens", "–")),
                Text(_preview(prompt)),
                Text(_preview(answer)),
            )
        out_console.print(table)


def show_command(
    record_id: Annotated[
        str, typer.Argument(metavar="CHAT_ID", help="A chat id, or a unique prefix of one.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Show one stored conversation with its generator, params, usage and status."""
    with handle_errors(), open_cli_store(store) as chat_store:
        data = chat_store.get_dict(record_id)
    if json_output:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    usage = data["usage"]
    status = "failed" if data["failed"] else f"ok ({data['stop_reason']})"
    rows: list[tuple[str, str]] = [
        ("id", data["id"]),
        ("time", data["timestamp"]),
        ("run", data["run"] or "–"),
        ("generator", data["generator_id"] or "–"),
        ("params", _params_text(data["params"])),
        ("status", status),
    ]
    if usage:
        rows.append(
            (
                "tokens",
                f"{usage['input_tokens']} in, {usage['output_tokens']} out, "
                f"{usage['total_tokens']} total",
            )
        )
    if data["error"]:
        rows.append(("error", f"{data['error']['type']}: {data['error']['message']}"))
    if data["metadata"]:
        rows.append(("metadata", json.dumps(data["metadata"], ensure_ascii=False)))
    for name, value in rows:
        header.add_row(name, Text(value))
    out_console.print(header)
    if data["kind"] == "chat":
        for message in [*data["messages"], *data["generated"]]:
            role = message["role"]
            out_console.print(
                Panel(
                    Text(message["content"]),
                    title=role,
                    title_align="left",
                    border_style=_ROLE_STYLES.get(role, "white"),
                    expand=False,
                )
            )
    else:
        body = Text(data["text"])
        body.append(data["generated"], style="green")
        out_console.print(Panel(body, title="completion", title_align="left", expand=False))
