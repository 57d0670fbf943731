"""`jib run` over datasets: ids and metadata in JSONL, CSV, stdin, samples, tags, system prompts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from jib import Chat
from jib.storage import open_store
from tests.cli.conftest import REPO, JibRunner, assert_one_clean_error_line


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def stored(store_path: Path, run: str) -> list[Chat]:
    with open_store(store_path) as store:
        return store.query(run=run, rebuild_generator=False)


def test_jsonl_lines_keep_their_id_and_every_other_key_as_metadata(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    dataset = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "q1", "prompt": "2+2?", "expected": "4"},
            {"id": 7, "prompt": "3+3?", "expected": "6", "metadata": {"source": "book", "n": [1]}},
            {"prompt": "no id here", "category": "misc", "tags": ["hard"]},
            "a plain string",
        ],
    )

    result = jib("run", "echo!demo", "-f", str(dataset), "-r", "ds")

    assert result.code == 0, result.stderr
    chats = {c.metadata["prompt_id"]: c for c in stored(default_store, "ds")}
    assert set(chats) == {"q1", "7", "3", "4"}  # no id: the line number
    assert chats["q1"].metadata == {"prompt_id": "q1", "sample_index": 0, "expected": "4"}
    assert chats["7"].metadata["source"] == "book" and chats["7"].metadata["n"] == [1]
    assert chats["7"].metadata["expected"] == "6"
    assert chats["3"].metadata["category"] == "misc"
    assert chats["q1"].content == "2+2?"
    with open_store(default_store) as store:
        assert [c.id for c in store.query(tag="hard")] == [chats["3"].id]


def test_prompt_ids_join_back_in_log_show_and_every_export(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    import pyarrow.parquet as pq

    dataset = write_jsonl(tmp_path / "d.jsonl", [{"id": "q1", "prompt": "hello"}])
    assert jib("run", "echo!demo", "-f", str(dataset), "-r", "j", "--repeat", "2").code == 0

    logged = jib("log", "--run", "j", "--json").json()
    assert sorted((r["prompt_id"], r["sample_index"]) for r in logged) == [("q1", 0), ("q1", 1)]
    table = jib("log", "--run", "j").stdout
    assert "prompt id" in table and "q1#1" in table
    shown = jib("show", logged[0]["id"]).stdout
    assert "prompt id  q1" in shown and "sample" in shown
    exported = [json.loads(line) for line in jib("export", "--run", "j").stdout.splitlines()]
    assert {(r["prompt_id"], r["sample_index"]) for r in exported} == {("q1", 0), ("q1", 1)}
    assert jib("export", "--run", "j", "-o", "j.csv").code == 0
    with open(tmp_path / "j.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["prompt_id"], r["sample_index"]) for r in rows} == {("q1", "0"), ("q1", "1")}
    assert jib("export", "--run", "j", "-o", "j.parquet").code == 0
    parquet = pq.read_table(tmp_path / "j.parquet")
    assert sorted(parquet.column("sample_index").to_pylist()) == [0, 1]
    assert set(parquet.column("prompt_id").to_pylist()) == {"q1"}


def test_csv_dataset_reads_the_prompt_column_and_keeps_the_others(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    dataset = tmp_path / "d.csv"
    dataset.write_text(
        'id,question,answer\na1,"two\nlines",42\na2,second,43\n\n,no id,44\n', encoding="utf-8"
    )

    result = jib("run", "echo!demo", "-f", str(dataset), "--column", "question", "-r", "c")

    assert result.code == 0, result.stderr
    chats = {c.metadata["prompt_id"]: c for c in stored(default_store, "c")}
    # An empty id: the line the row starts on (the header is line 1, "two\nlines" takes 2).
    assert set(chats) == {"a1", "a2", "6"}
    assert chats["a1"].content == "two\nlines"
    assert chats["a1"].metadata == {"prompt_id": "a1", "sample_index": 0, "answer": "42"}
    assert chats["6"].content == "no id"


def test_csv_with_a_prompt_column_or_a_single_column_needs_no_option(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    (tmp_path / "named.csv").write_text("\ufefftopic,prompt\nsea,a haiku\n", encoding="utf-8")
    (tmp_path / "single.csv").write_text("text\nonly column\n", encoding="utf-8")

    assert jib("run", "echo!demo", "-f", "named.csv", "-r", "named").code == 0
    assert jib("run", "echo!demo", "-f", "single.csv", "-r", "single").code == 0

    [named] = stored(default_store, "named")
    assert (named.content, named.metadata["topic"]) == ("a haiku", "sea")  # BOM dropped
    assert [c.content for c in stored(default_store, "single")] == ["only column"]


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        ("a,b\n1,2\n", [], "which column holds the prompt? None is named 'prompt'"),
        ("a,b\n1,2\n", ["--column", "c"], "no column 'c' (--column); the columns are ['a', 'b']"),
        ("prompt,x\nhi\n", [], "d.csv line 2: 1 fields, but the header has 2"),
        ("prompt,prompt\nhi,ho\n", [], "line 1: the header row repeats ['prompt']"),
        ("prompt,x\n ,1\n", [], "line 2: the prompt (column 'prompt') is empty"),
        ("id,prompt\nq,a\nq,b\n", [], "line 3: id 'q' is already the id of line 2"),
        ("prompt,prompt_id\na,1\n", [], "['prompt_id'] is set by jib run itself"),
        ("prompt\n", [], "prompts file 'd.csv' has no prompts"),
    ],
)
def test_malformed_csv_names_the_line(
    jib: JibRunner, tmp_path: Path, content: str, args: list[str], expected: str
) -> None:
    (tmp_path / "d.csv").write_text(content)

    result = jib("run", "echo!demo", "-f", "d.csv", *args)

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"id": 1.5, "prompt": "x"}, "line 1: 'id' must be a string or an integer, not 1.5"),
        ({"id": True, "prompt": "x"}, "'id' must be a string or an integer, not true"),
        ({"id": " ", "prompt": "x"}, "'id' must be 1 to 255 characters"),
        ({"prompt": "x", "metadata": [1]}, "line 1: 'metadata' must be an object"),
        ({"prompt": "x", "a": 1, "metadata": {"a": 2}}, "['a'] given both as key(s) of the line"),
        ({"prompt": "x", "sample_index": 3}, "['sample_index'] is set by jib run itself"),
        ({"text": "x"}, "line 1: give exactly one of 'prompt' or 'messages'"),
    ],
)
def test_malformed_jsonl_ids_and_metadata_name_the_line(
    jib: JibRunner, tmp_path: Path, line: object, expected: str
) -> None:
    write_jsonl(tmp_path / "d.jsonl", [line])

    result = jib("run", "echo!demo", "-f", "d.jsonl")

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_repeated_ids_in_jsonl_are_refused(jib: JibRunner, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prompt": "x"}, "y", {"id": "a", "prompt": "z"}])

    result = jib("run", "echo!demo", "-f", "d.jsonl")

    assert_one_clean_error_line(result, "d.jsonl line 3: id 'a' is already the id of line 1")


def test_column_picks_the_key_of_a_jsonl_dataset(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "question": "why?", "prompt": "kept"}])

    result = jib("run", "echo!demo", "-f", "d.jsonl", "--column", "question", "-r", "k")

    assert result.code == 0, result.stderr
    [chat] = stored(default_store, "k")
    assert chat.content == "why?"
    assert chat.metadata["prompt"] == "kept"


def test_column_on_a_text_file_is_refused(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "--column", "q")

    assert_one_clean_error_line(result, "--column picks the prompt of a .csv or .jsonl dataset")


def test_prompts_from_stdin_as_text_or_jsonl(jib: JibRunner, default_store: Path) -> None:
    text = jib("run", "echo!demo", "-f", "-", "-r", "t", stdin="first\n\nsecond\n")
    jsonl = jib("run", "echo!demo", "-f", "-", "-r", "j", stdin='{"id": "s", "prompt": "json"}\n')
    forced = jib(
        "run", "echo!demo", "-f", "-", "--prompts-format", "csv", "-r", "c", stdin="prompt\nrow\n"
    )

    assert (text.code, jsonl.code, forced.code) == (0, 0, 0), text.stderr + jsonl.stderr
    assert [(c.metadata["prompt_id"], c.content) for c in stored(default_store, "t")] == [
        ("1", "first"),
        ("3", "second"),
    ]
    assert [(c.metadata["prompt_id"], c.content) for c in stored(default_store, "j")] == [
        ("s", "json")
    ]
    assert [c.content for c in stored(default_store, "c")] == ["row"]
    assert "--prompts FILE" in text.stderr  # the hint does not name "-" as a file


def test_empty_stdin_has_no_prompts(jib: JibRunner) -> None:
    result = jib("run", "echo!demo", "-f", "-", stdin="")

    assert_one_clean_error_line(result, "prompts file '-' has no prompts")


def test_repeat_stores_each_sample_with_its_index_and_resume_adds_the_missing_ones(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    assert jib("run", "echo!demo", "-f", "d.jsonl", "-r", "s", "--repeat", "2").code == 0

    result = jib(
        "run", "echo!demo", "-f", "d.jsonl", "-r", "s", "--repeat", "3", "--resume", "--no-progress"
    )

    assert result.code == 0, result.stderr
    assert "echo!demo: 2 to run (4 already stored, skipped)" in result.stderr
    keys = sorted(
        (c.metadata["prompt_id"], c.metadata["sample_index"]) for c in stored(default_store, "s")
    )
    assert keys == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]


def test_tags_are_stored_with_every_chat_of_the_run(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-r", "t", "--tag", "v1", "-t", "x")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        assert store.count(run="t", tag="v1") == 8
        assert store.count(tag="x") == 8
    assert len(jib("log", "--tag", "v1", "--json", "-n", "50").json()) == 8


def test_a_lines_own_system_message_wins_over_the_system_option(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "own", "messages": [{"role": "system", "content": "mine"}, "hi"]},
            {"id": "none", "prompt": "hello"},
        ],
    )

    result = jib("run", "echo!demo", "-f", "d.jsonl", "-s", "global", "-r", "sys")

    assert result.code == 0, result.stderr
    chats = {c.metadata["prompt_id"]: c for c in stored(default_store, "sys")}
    assert [(m.role, m.content) for m in chats["own"].messages] == [
        ("system", "mine"),
        ("user", "hi"),
    ]
    assert [(m.role, m.content) for m in chats["none"].messages] == [
        ("system", "global"),
        ("user", "hello"),
    ]


def test_the_example_dataset_runs(jib: JibRunner, default_store: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(REPO / "examples" / "dataset.jsonl"), "-r", "ex")

    assert result.code == 0, result.stderr
    chats = stored(default_store, "ex")
    assert all("expected" in c.metadata for c in chats)
    assert len({c.metadata["prompt_id"] for c in chats}) == len(chats) >= 5
