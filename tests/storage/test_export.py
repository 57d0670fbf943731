"""Exports: JSON Lines that load back, CSV, Parquet and pandas DataFrames."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from jib import Chat, Completion
from jib.storage import FLAT_COLUMNS, ChatStore
from jib.testing import AlwaysFailGenerator, EchoGenerator


def timed(chats: list[Chat]) -> list[Chat]:
    for chat in chats:
        chat.latency_ms, chat.cost_usd, chat.attempts = 12.5, 0.001, 1
    return chats


@pytest.fixture
async def run_store(store: ChatStore) -> ChatStore:
    echo = EchoGenerator(model="demo").chat([{"role": "system", "content": "sys"}])
    await (
        echo.meta(tags=["t"], prompt_id="p1", sample_index=0)
        .map(timed)
        .watch(store.watch(run="exp"))
        .run_batch(['a, "quoted"', "b\nc"])
    )
    await (
        AlwaysFailGenerator(model="down", message="boom")
        .chat()
        .watch(store.watch(run="exp"))
        .run_batch(["d"], on_failed="include")
    )
    await EchoGenerator(model="demo").complete("once").watch(store.watch(run="other")).run()
    return store


def test_jsonl_lines_load_back_as_records(run_store: ChatStore, tmp_path: Path) -> None:
    target = tmp_path / "out" / "exp.jsonl"

    assert run_store.export_jsonl(target, run="exp") == 3

    lines = target.read_text(encoding="utf-8").splitlines()
    loaded = [Chat.from_dict(json.loads(line)) for line in lines]
    assert [c.to_dict() for c in loaded] == [c.to_dict() for c in run_store.query(run="exp")]
    assert all(json.loads(line)["run"] == "exp" for line in lines)


def test_jsonl_of_completions_to_an_open_file(run_store: ChatStore) -> None:
    buffer = io.StringIO()

    assert run_store.export_jsonl(buffer, kind="completion") == 1

    completion = Completion.from_dict(json.loads(buffer.getvalue()))
    assert completion.all == "onceonce"


def test_csv_has_a_header_and_one_row_per_record(run_store: ChatStore, tmp_path: Path) -> None:
    target = tmp_path / "exp.csv"

    assert run_store.export_csv(target, run="exp") == 3

    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == FLAT_COLUMNS
    assert [r["prompt"] for r in rows] == ['a, "quoted"', "b\nc", "d"]
    assert [r["response"] for r in rows] == ['a, "quoted"', "b\nc", ""]
    assert [r["failed"] for r in rows] == ["False", "False", "True"]
    assert rows[2]["error_message"] == "[test] HTTP 500: boom"
    assert json.loads(rows[0]["messages"])[0] == {"role": "system", "content": "sys"}
    assert json.loads(rows[0]["tags"]) == ["t"]
    assert [r["prompt_id"] for r in rows] == ["p1", "p1", ""]
    assert [r["sample_index"] for r in rows] == ["0", "0", ""]
    assert [r["latency_ms"] for r in rows[:2]] == ["12.5", "12.5"]
    assert [r["cost_usd"] for r in rows] == ["0.001", "0.001", ""]


def test_parquet_keeps_types(run_store: ChatStore, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "exp.parquet"

    assert run_store.export_parquet(target, run="exp") == 3

    table = pq.read_table(target)
    assert table.column_names == list(FLAT_COLUMNS)
    assert table.column("failed").to_pylist() == [False, False, True]
    assert table.column("total_tokens").to_pylist() == [4, 4, None]
    assert table.column("prompt_id").to_pylist() == ["p1", "p1", None]
    assert table.column("sample_index").to_pylist() == [0, 0, None]
    assert table.column("cost_usd").to_pylist() == [0.001, 0.001, None]
    assert table.column("attempts").to_pylist() == [1, 1, None]
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"


def test_parquet_of_nothing_is_an_empty_table(store: ChatStore, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    assert store.export_parquet(tmp_path / "empty.parquet") == 0
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_dataframe_has_one_row_per_record(run_store: ChatStore) -> None:
    frame = run_store.to_dataframe(run="exp")

    assert list(frame.columns) == list(FLAT_COLUMNS)
    assert len(frame) == 3
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["failed"].tolist() == [False, False, True]
    assert frame["output_tokens"].isna().tolist() == [False, False, True]
    assert frame["prompt_id"].tolist()[:2] == ["p1", "p1"]
    assert frame["prompt_id"].isna().tolist() == [False, False, True]
    assert str(frame["sample_index"].dtype) == "Int64"
    assert frame["messages"][0][-1] == {"role": "user", "content": 'a, "quoted"'}
