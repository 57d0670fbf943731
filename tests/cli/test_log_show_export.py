"""`jib log`, `jib show` and `jib export` on a store filled by `jib run`."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jib import Chat, ContentImageUrl, Message
from jib.storage import open_store
from tests.cli.conftest import (
    EXAMPLE_PROMPTS,
    JibRunner,
    assert_one_clean_error_line,
    isolated_env,
    jib_command,
    make_runner,
)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> JibRunner:
    """A runner whose store holds run "good" (8 chats) and run "bad" (8 failures)."""
    folder = tmp_path_factory.mktemp("filled")
    jib = make_runner(isolated_env(folder), folder)
    assert jib("run", "echo!demo", "-f", str(EXAMPLE_PROMPTS), "-r", "good").code == 0
    assert jib("run", "always_fail!down", "-f", str(EXAMPLE_PROMPTS), "-r", "bad").code == 1
    return jib


@pytest.fixture
def prompts_file() -> Path:
    """The example prompts the store was filled from."""
    return EXAMPLE_PROMPTS


def test_log_shows_recent_chats_as_a_table(filled: JibRunner) -> None:
    result = filled("log", "-n", "3")

    assert result.code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "time", "(UTC)"]
    assert len(lines) == 4
    assert all("always_fail!down" in line and "failed" in line for line in lines[1:])


def test_log_on_a_narrow_terminal_keeps_status_prompt_and_answer(filled: JibRunner) -> None:
    result = filled("log", "-n", "2", env_update={"COLUMNS": "80"})

    assert result.code == 0
    lines = result.stdout.rstrip("\n").splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "id",
        "prompt id",
        "generator",
        "status",
        "prompt",
        "answer",
    ]
    assert all(len(line) <= 80 for line in lines)
    assert all("always_fail!down" in line and "failed  " in line for line in lines[1:])
    assert all("ServerError" in line for line in lines[1:])


def test_log_json_parses_back_newest_first(filled: JibRunner, prompts_file: Path) -> None:
    records = filled("log", "--run", "good", "-n", "100", "--json").json()

    assert len(records) == 8
    assert [r["messages"][-1]["content"] for r in records] == list(
        reversed(prompts_file.read_text().splitlines())
    )
    assert Chat.from_dict(records[0]).content == records[0]["generated"][0]["content"]


def test_log_failed_only(filled: JibRunner) -> None:
    records = filled("log", "--failed", "-n", "100", "--json").json()

    assert len(records) == 8
    assert {r["run"] for r in records} == {"bad"}
    assert records[0]["error"]["type"] == "ServerError"


def test_log_on_an_empty_store_says_how_to_fill_it(jib: JibRunner) -> None:
    result = jib("log")

    assert result.code == 0
    assert "No chats are stored yet" in result.stdout
    assert jib("log", "--json").json() == []


def test_show_one_conversation_by_id_prefix(filled: JibRunner) -> None:
    newest = filled("log", "--run", "good", "-n", "1", "--json").json()[0]

    result = filled("show", newest["id"][:8])

    assert result.code == 0
    assert newest["id"] in result.stdout
    assert "echo!demo" in result.stdout
    assert newest["generated"][0]["content"] in result.stdout
    assert "assistant" in result.stdout
    assert filled("show", newest["id"], "--json").json() == newest


def test_show_unknown_id_is_one_line(filled: JibRunner) -> None:
    result = filled("show", "deadbeef")

    assert_one_clean_error_line(result, "no stored chat or completion has the id 'deadbeef'")
    assert result.code == 1


def test_export_jsonl_to_stdout(filled: JibRunner) -> None:
    result = filled("export", "--run", "good")

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 8
    assert "exported 8 records as jsonl to stdout" in result.stderr


def test_export_csv_to_a_file(filled: JibRunner, tmp_path: Path) -> None:
    target = tmp_path / "out" / "bad.csv"
    result = filled("export", "--run", "bad", "--format", "csv", "-o", str(target))

    assert result.code == 0, result.stderr
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert {r["failed"] for r in rows} == {"True"}


def test_export_parquet_format_from_the_file_suffix(filled: JibRunner, tmp_path: Path) -> None:
    result = filled("export", "--ok", "-o", str(tmp_path / "all.parquet"))

    assert result.code == 0, result.stderr
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.num_rows == 8
    assert set(table.column("run").to_pylist()) == {"good"}


def test_export_parquet_to_stdout_is_refused(filled: JibRunner) -> None:
    result = filled("export", "--format", "parquet")

    assert_one_clean_error_line(result, "give a file with --output")
    assert result.code == 2


def test_export_unknown_format_is_refused(jib: JibRunner) -> None:
    result = jib("export", "--format", "xml")

    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert "xml" in result.stderr


def test_export_into_a_folder_is_one_line(filled: JibRunner, tmp_path: Path) -> None:
    result = filled("export", "-o", str(tmp_path))

    assert_one_clean_error_line(result, "Is a directory")
    assert result.code == 1


def test_export_into_a_closed_pipe_stops_quietly(jib_env: dict[str, str], tmp_path: Path) -> None:
    store_path = tmp_path / "big.db"
    with open_store(store_path) as store:
        store.save(Chat(messages=[Message("user", f"{i} " + "x" * 1000)]) for i in range(300))
    # `jib export | head -c 100`: the reader goes away long before the ~300 KB are written.
    process = subprocess.Popen(
        [*jib_command(), "export", "--store", str(store_path)],
        env=jib_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(100)) == 100
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)

    assert process.returncode == 1
    assert "Traceback" not in stderr
    assert "error:" not in stderr


def test_export_with_parts_as_files_writes_each_image_once_beside_the_export(
    jib: JibRunner, default_store: Path, tmp_path: Path
) -> None:
    image = ContentImageUrl.from_bytes(b"\x89PNG" + bytes(2048), "image/png")
    with open_store(default_store) as store:
        for prompt in ("first", "second"):
            store.save(Chat(messages=[Message("user", [prompt, image])]))
    target = tmp_path / "out.jsonl"

    result = jib("export", "--parts-as-files", "-o", str(target))

    assert result.code == 0, result.stderr
    assert [path.name for path in (tmp_path / "out.files").iterdir()] == [
        f"{hashlib.sha256(image.data or b'').hexdigest()}.png"
    ]
    assert "data:" not in target.read_text()
    loaded = Chat.from_jsonl(target)
    assert [chat.messages[0].content_parts[1] for chat in loaded] == [image, image]


def test_export_parts_as_files_needs_a_jsonl_file(jib: JibRunner) -> None:
    result = jib("export", "--parts-as-files")

    assert result.code == 2
    assert "--parts-as-files writes files beside a JSON Lines export" in result.stderr
