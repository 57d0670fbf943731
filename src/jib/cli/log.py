"""`jib log` (recent chats) and `jib show` (one conversation)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jib.cli._common import (
    StoreOption,
    err_console,
    handle_errors,
    open_cli_store,
    out_console,
)
from jib.cli._figures import format_cost, format_ms
from jib.cli._message_view import call_line, part_label, parts_of, readable, tool_calls_of
from jib.cli._schema import SCHEMA_ERROR
from jib.cli._skipped import counting_unreadable
from jib.cli._terminal import printable_data

__all__ = ["log_command", "print_record", "show_command"]

_ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def _preview(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _prompt_and_answer(data: dict[str, Any]) -> tuple[str, str]:
    if data["kind"] == "chat":
        sent, generated = data["messages"], data["generated"]
        prompt = readable(sent[-1]) if sent else ""
        answer = _with_calls(generated[-1]) if generated else ""
        return prompt, answer
    return data["text"], data["generated"]


def _with_calls(message: dict[str, Any]) -> str:
    """A message's readable text, then a line per tool call it makes."""
    lines = [readable(message)] if readable(message) else []
    lines += [call_line(name, arguments) for name, arguments in tool_calls_of(message)]
    return "\n".join(lines)


def _message_panel(message: dict[str, Any]) -> Panel:
    """A message as a panel titled by its role: its text, a dim label per part that is not
    text, and a line per tool call (a tool result's title names the call it answers)."""
    role = str(message.get("role", "?"))
    body = Text()
    for part in parts_of(message):
        if body:
            body.append("\n")
        if isinstance(part, dict) and part.get("type") == "text":
            body.append(str(part.get("text", "")))
        else:
            body.append(part_label(part), style="dim")
    for name, arguments in tool_calls_of(message):
        if body:
            body.append("\n")
        body.append(call_line(name, arguments), style="bold")
    title = Text(role)
    call_id = message.get("tool_call_id")
    if role == "tool" and isinstance(call_id, str):
        title.append(f" · answers {call_id}")
    return Panel(
        body,
        title=title,
        title_align="left",
        border_style=_ROLE_STYLES.get(role, "white"),
        expand=False,
    )


def _params_text(params: dict[str, Any] | None) -> str:
    shown = {k: v for k, v in (params or {}).items() if not (k == "extra" and not v)}
    return json.dumps(shown, ensure_ascii=False) if shown else "–"


def _dataset_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The prompt id and sample index of a record that came from a dataset."""
    if data.get("prompt_id") is None:
        return []
    return [("prompt id", data["prompt_id"]), ("sample", str(data.get("sample_index") or 0))]


def _when(data: dict[str, Any]) -> str:
    moment = datetime.fromisoformat(data["timestamp"])
    return moment.strftime("%Y-%m-%d %H:%M")


_GAP = 2  # spaces between columns
_PREVIEW_MIN = 12
_GENERATOR_MIN = 16
_WIDE_PREVIEW = 60
_FLEXIBLE = ("generator", "prompt", "answer")
_OPTIONAL = ("cost", "latency", "tokens", "run", "time (UTC)", "prompt id")
"""Columns left out, in this order, when the terminal is too narrow for every column."""


def _log_cells(data: dict[str, Any]) -> dict[str, Text]:
    prompt, answer = _prompt_and_answer(data)
    if data["failed"] and data["error"]:
        answer = f"{data['error']['type']}: {data['error']['message']}"
    status = (
        Text("failed", style="red") if data["failed"] else Text(data["stop_reason"], style="green")
    )
    usage = data["usage"] or {}
    prompt_id = data.get("prompt_id")
    if prompt_id is not None and data.get("sample_index"):
        prompt_id = f"{prompt_id}#{data['sample_index']}"
    return {
        "id": Text(data["id"][:12]),
        "time (UTC)": Text(_when(data)),
        "run": Text(_preview(data["run"] or "–", 24)),
        "prompt id": Text(_preview(prompt_id or "–", 16)),
        "generator": Text(data["generator_id"] or "–"),
        "status": status,
        "tokens": Text(str(usage.get("total_tokens", "–")), justify="right"),
        "latency": Text(format_ms(data.get("latency_ms")), justify="right"),
        "cost": Text(format_cost(data.get("cost_usd")), justify="right"),
        "prompt": Text(" ".join(prompt.split())),
        "answer": Text(" ".join(answer.split())),
    }


def _log_table(records: list[dict[str, Any]], width: int, *, wide: bool = False) -> Table:
    """Recent records as a table at most `width` wide (unless `wide`).

    The id, status and the `_OPTIONAL` columns are shown whole; the generator, prompt and answer
    share what is left, cut with an ellipsis. On a narrow terminal the `_OPTIONAL` columns are
    left out first. `wide` shows every column and longer previews, whatever the width.
    """
    rows = [_log_cells(data) for data in records]
    names = list(rows[0])
    widths = {name: max(len(name), *(row[name].cell_len for row in rows)) for name in names}
    fixed = [name for name in names if name not in _FLEXIBLE]
    if wide:
        flexible = {
            "generator": widths["generator"],
            "prompt": min(widths["prompt"], _WIDE_PREVIEW),
            "answer": min(widths["answer"], _WIDE_PREVIEW),
        }
    else:
        generator_min = min(widths["generator"], _GENERATOR_MIN)

        def spare() -> int:
            used = sum(widths[name] for name in fixed) + _GAP * (len(fixed) + len(_FLEXIBLE) - 1)
            return width - used

        for name in _OPTIONAL:
            if spare() >= generator_min + 2 * _PREVIEW_MIN:
                break
            fixed.remove(name)
        generator = max(generator_min, min(widths["generator"], spare() // 3))
        preview = max(_PREVIEW_MIN, (spare() - generator) // 2)
        flexible = {
            "generator": generator,
            "prompt": min(preview, widths["prompt"]),
            "answer": min(preview, widths["answer"]),
        }
    shown = [name for name in names if name in fixed or name in _FLEXIBLE]
    table = Table(box=None, pad_edge=False, padding=(0, _GAP // 2), expand=False)
    for name in shown:
        column_width = flexible.get(name, widths[name])
        table.add_column(name, width=column_width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[name] for name in shown))
    return table


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
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            "-w",
            help="Every column, whole identifiers and longer previews, however wide the terminal.",
        ),
    ] = False,
    store: StoreOption = None,
) -> None:
    """List the most recent stored chats, newest first, fitted to the terminal's width.

    A stored record that cannot be read is skipped; a note on stderr counts and names it.
    """
    with (
        handle_errors(),
        open_cli_store(store) as chat_store,
        counting_unreadable(err_console) as skipped,
    ):
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
            if skipped.count:
                message = f"No stored chat that can be read matches in {chat_store.url}."
            elif run or failed or model or tag:
                message = f"No stored chats match in {chat_store.url}."
            else:
                message = (
                    f"No chats are stored yet in {chat_store.url}. Try: "
                    "jib run 'echo!demo' --prompts examples/prompts.txt"
                )
            out_console.print(message, markup=False)
            return
        table = _log_table(printable_data(records), out_console.width, wide=wide)
        if wide:
            # A console as wide as the table: rich never draws wider than its console.
            needed = table.__rich_measure__(out_console, out_console.options).maximum
            Console(
                width=max(needed, out_console.width),
                highlight=False,
                force_terminal=out_console.is_terminal,
                color_system=out_console.color_system,  # type: ignore[arg-type]
            ).print(table)
        else:
            out_console.print(table)


def show_command(
    record_id: Annotated[
        str, typer.Argument(metavar="CHAT_ID", help="A chat id, or a unique prefix of one.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Show one stored conversation with its generator, params, usage and status.

    A record that cannot be read is an error that says why.
    """
    with handle_errors(), open_cli_store(store) as chat_store:
        data = chat_store.get_dict(record_id)
    if json_output:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    print_record(data, out_console)


def print_record(data: dict[str, Any], console: Console) -> None:
    """A stored record (its dict) as `jib show` prints it: a header of its figures, then each
    message in a panel (a label per part, a line per tool call). Every string is made
    `printable` and none is read as Rich markup."""
    data = printable_data(data)  # model and record text never reaches the terminal raw
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    usage = data["usage"]
    status = "failed" if data["failed"] else f"ok ({data['stop_reason']})"
    rows: list[tuple[str, str]] = [
        ("id", data["id"]),
        ("time", data["timestamp"]),
        ("run", data["run"] or "–"),
        *_dataset_rows(data),
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
    if data.get("latency_ms") is not None:
        rows.append(("latency", format_ms(data["latency_ms"])))
    if data.get("attempts") is not None:
        rows.append(("attempts", str(data["attempts"])))
    if data.get("cost_usd") is not None:
        rows.append(("cost", format_cost(data["cost_usd"])))
    cached = (data.get("extra") or {}).get("response_cache")
    if isinstance(cached, dict) and cached.get("hit"):
        origin = cached.get("chat_id")
        rows.append(
            ("cached", f"from the response cache: the answer of chat {origin or '(unknown)'}")
        )
    if data["error"]:
        rows.append(("error", f"{data['error']['type']}: {data['error']['message']}"))
    if data["metadata"]:
        rows.append(("metadata", json.dumps(data["metadata"], ensure_ascii=False)))
    if data.get("output") is not None:
        rows.append(("output", json.dumps(data["output"], ensure_ascii=False)))
    schema_error = (data.get("extra") or {}).get(SCHEMA_ERROR)
    if schema_error:
        rows.append(("schema", f"not valid: {schema_error}"))
    for name, value in rows:
        header.add_row(name, Text(value))
    console.print(header)
    if data["kind"] == "chat":
        for message in [*data["messages"], *data["generated"]]:
            console.print(_message_panel(message))
    else:
        body = Text(data["text"])
        body.append(data["generated"], style="green")
        console.print(Panel(body, title="completion", title_align="left", expand=False))
