"""`jib compare`: a run's answers side by side, one row per prompt, one column per generator."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from functools import partial
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from jib.cli._common import (
    EXIT_USAGE,
    StoreOption,
    err_console,
    fail,
    handle_errors,
    open_cli_store,
    out_console,
    require_run,
)
from jib.cli._comparison import Answer, ComparedPrompt, Comparison, compare_records
from jib.cli._figures import shorten_identifier, wrap_identifier
from jib.cli._message_view import call_line
from jib.cli._skipped import counting_unreadable
from jib.cli._terminal import printable
from jib.storage._csv import CsvWriter

__all__ = ["CompareFormat", "compare_command", "load_comparison"]

_CELL = 400
"""Characters of an answer shown in the terminal table (the exports keep it all)."""


class CompareFormat(str, Enum):
    """The formats `jib compare` writes."""

    table = "table"
    csv = "csv"
    jsonl = "jsonl"


def load_comparison(store: str | None, run: str) -> Comparison:
    """The comparison of `run` in the store at `store` (default store when `None`).

    Records that cannot be read are skipped, counted in `Comparison.unreadable` and named in a
    note on stderr.

    Raises:
        CliError: the store holds no such run.
    """
    with open_cli_store(store) as chat_store, counting_unreadable(err_console) as skipped:
        require_run(chat_store, run)
        comparison = compare_records(run, chat_store.iter_dicts(run=run))
        comparison.unreadable = skipped.count
        return comparison


def compare_command(
    run: Annotated[
        str, typer.Option("--run", "-r", metavar="NAME", help="The run to compare (see jib runs).")
    ],
    format: Annotated[
        CompareFormat,
        typer.Option(
            "--format",
            "-F",
            help="table (for the terminal), csv (a spreadsheet: an answer and an error column "
            "per generator) or jsonl (one prompt per line with every answer).",
        ),
    ] = CompareFormat.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="File to write csv or jsonl to. Default: stdout.",
            show_default=False,
        ),
    ] = None,
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            help="With --format csv: write cells exactly as stored. By default a cell a "
            "spreadsheet would run as a formula (starting with = + - @, a tab or a carriage "
            "return) gets a leading ' (docs/security.md).",
        ),
    ] = False,
    store: StoreOption = None,
) -> None:
    """Show each prompt of a run with every generator's answer side by side.

    Rows are the run's prompts (by prompt id, then sample); columns its generators. A prompt's
    `expected` metadata, when the dataset has one, is shown next to the answers. An answer shows
    the tool calls it makes (-> name(arguments)) and, in a run with --schema, its validated
    output (or why it does not fit).
    """
    with handle_errors():
        if raw_csv and format is not CompareFormat.csv:
            fail(f"--raw-csv is for --format csv, not {format.value}", EXIT_USAGE)
        comparison = load_comparison(store, run)
        if format is CompareFormat.table:
            out_console.print(_table(comparison))
            return
        writer: Callable[[Comparison, IO[str]], None] = _write_jsonl
        if format is CompareFormat.csv:
            writer = partial(_write_csv, escape_formulas=not raw_csv)
        if output is None:
            writer(comparison, sys.stdout)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(output, "w", encoding="utf-8", newline="") as handle:
                writer(comparison, handle)
        where = str(output) if output else "stdout"
        err_console.print(
            f"compared {comparison.describe()} as {format.value} to {where}",
            markup=False,
            highlight=False,
        )


def _prompt_label(prompt: ComparedPrompt, samples: bool) -> str:
    label = prompt.prompt_id or "–"
    return f"{label}#{prompt.sample_index}" if samples else label


def _cut(text: str) -> str:
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _cell(answer: Answer | None) -> Text:
    """An answer in the table: a validated output as such (`output: {…}`), else its text (and
    why it does not fit the run's schema), then a line per tool call it makes."""
    if answer is None:
        return Text("–", style="dim")
    if answer.failed:
        return Text(printable(f"failed: {answer.error or 'unknown error'}"), style="red")
    cell = Text()
    if answer.output is not None:
        cell.append(printable(_cut("output: " + _plain(answer.output))), style="green")
    elif answer.text:
        cell.append(printable(_cut(answer.text)))
    if answer.schema_error:
        cell.append(("\n" if cell else "") + printable(f"not valid: {answer.schema_error}"), "red")
    for name, arguments in answer.tool_calls:
        cell.append(("\n" if cell else "") + printable(_cut(call_line(name, arguments))), "bold")
    return cell


def _table(comparison: Comparison) -> Table:
    samples = comparison.samples
    expected = any("expected" in p.metadata for p in comparison.prompts)
    table = Table(
        title=Text(printable(f"run {comparison.run}: {comparison.describe()}"), "table.title"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_lines=True,
        pad_edge=False,
    )
    table.add_column("id", no_wrap=True)
    table.add_column("prompt", ratio=2, overflow="fold")
    if expected:
        table.add_column("expected", ratio=1, overflow="fold")
    for generator in comparison.generators:
        header = Text(printable(wrap_identifier(shorten_identifier(generator), 24)))
        table.add_column(header, ratio=2, overflow="fold")
    for prompt in comparison.prompts:
        row = [Text(printable(_prompt_label(prompt, samples))), Text(printable(prompt.prompt))]
        if expected:
            shown = printable(_plain(prompt.metadata.get("expected", "")))
            row.append(Text(shown, style="cyan"))
        row += [_cell(prompt.answers.get(generator)) for generator in comparison.generators]
        table.add_row(*row)
    return table


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_csv(comparison: Comparison, handle: IO[str], *, escape_formulas: bool = True) -> None:
    keys = comparison.metadata_keys()
    header = ["prompt_id", "sample_index", "prompt", *keys]
    for generator in comparison.generators:
        header += [generator, f"{generator} error"]
    writer = CsvWriter(handle, escape_formulas=escape_formulas)
    writer.writerow(header)
    for prompt in comparison.prompts:
        row: list[Any] = [prompt.prompt_id, prompt.sample_index, prompt.prompt]
        row += [_plain(prompt.metadata[key]) if key in prompt.metadata else "" for key in keys]
        for generator in comparison.generators:
            answer = prompt.answers.get(generator)
            row += ["", ""] if answer is None else [_with_calls(answer), answer.error or ""]
        writer.writerow(row)


def _with_calls(answer: Answer) -> str:
    """An answer's text, then a line per tool call it makes."""
    calls = [call_line(name, arguments) for name, arguments in answer.tool_calls]
    return "\n".join([answer.text, *calls] if answer.text else calls)


def _answer_json(answer: Answer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": answer.record_id,
        "text": answer.text,
        "failed": answer.failed,
        "error": answer.error,
        "latency_ms": answer.latency_ms,
        "cost_usd": answer.cost_usd,
    }
    if answer.tool_calls:
        data["tool_calls"] = [{"name": n, "arguments": a} for n, a in answer.tool_calls]
    if answer.output is not None:
        data["output"] = answer.output
    if answer.schema_error:
        data["schema_error"] = answer.schema_error
    return data


def _write_jsonl(comparison: Comparison, handle: IO[str]) -> None:
    for prompt in comparison.prompts:
        line = {
            "run": comparison.run,
            "prompt_id": prompt.prompt_id,
            "sample_index": prompt.sample_index,
            "prompt": prompt.prompt,
            "metadata": prompt.metadata,
            "answers": {
                generator: _answer_json(answer) for generator, answer in prompt.answers.items()
            },
        }
        handle.write(json.dumps(line, ensure_ascii=False) + "\n")
