"""Exports: JSON Lines that load back, CSV, Parquet and pandas DataFrames."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from jib import Chat, Completion, ContentAudioInput, ContentFile, ContentImageUrl, Message
from jib.storage import FLAT_COLUMNS, ChatStore, StoreError, UnreadableRecordWarning
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


# -- parts: inline by default, or files beside the export --------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def parts_store(store: ChatStore) -> ChatStore:
    picture = ContentImageUrl.from_bytes(PNG, "image/png", detail="high")
    clip = ContentAudioInput.from_bytes(b"fLaC" + bytes(500), "flac")
    document = ContentFile.from_bytes(b"%PDF-1.7" + bytes(500), "application/pdf", filename="a.pdf")
    chats = [
        Chat(
            messages=[Message("user", [f"Look {n}", picture, clip, document])],
            generated=[Message("assistant", "A picture.")],
            output={"n": n},
        )
        for n in range(3)
    ]
    store.save(chats, run="parts")
    store.save(Completion(text="plain"), run="parts")
    return store


def test_jsonl_keeps_parts_as_data_urls_by_default(parts_store: ChatStore, tmp_path: Path) -> None:
    target = tmp_path / "parts.jsonl"

    assert parts_store.export_jsonl(target, run="parts", kind="chat") == 3

    first = json.loads(target.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    stored = parts_store.query(run="parts", kind="chat")
    assert [c.messages for c in Chat.from_jsonl(target)] == [c.messages for c in stored]
    assert Chat.from_dict(first).messages == stored[0].messages
    assert not (tmp_path / "parts.files").exists()


def test_jsonl_with_parts_as_files_writes_each_content_once_beside_it(
    parts_store: ChatStore, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "parts.jsonl"

    assert parts_store.export_jsonl(target, run="parts", parts_as_files=True) == 4

    files = sorted(p.name for p in (tmp_path / "out" / "parts.files").iterdir())
    digest = hashlib.sha256(PNG).hexdigest()
    assert len(files) == 3 and f"{digest}.png" in files
    assert (tmp_path / "out" / "parts.files" / f"{digest}.png").read_bytes() == PNG
    text = target.read_text(encoding="utf-8")
    assert "base64" not in text
    assert f'"jib-file:image/png,parts.files/{digest}.png"' in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableRecordWarning)  # each the other kind's lines
        loaded = Chat.from_jsonl(target)
        [completion] = Completion.from_jsonl(target)
    assert completion.text == "plain"
    stored = parts_store.query(run="parts", kind="chat")
    assert [c.messages for c in loaded] == [c.messages for c in stored]
    assert [c.output for c in loaded] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_parts_as_files_needs_the_exports_path(parts_store: ChatStore) -> None:
    with pytest.raises(StoreError, match="give the export's path, not an open file"):
        parts_store.export_jsonl(io.StringIO(), parts_as_files=True)


def file_line(reference: str) -> str:
    """A chat line whose image is the file `reference` (a `jib-file:` reference's path)."""
    part = {"type": "image_url", "image_url": {"url": f"jib-file:image/png,{reference}"}}
    chat = Chat().to_dict()
    chat["messages"] = [{"role": "user", "content": [{"type": "text", "text": "look"}, part]}]
    return json.dumps(chat)


def test_from_jsonl_reads_files_only_from_beside_the_export(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "r.files").mkdir(parents=True)
    (folder / "r.files" / "ok.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    (folder / "r.files" / "link.png").symlink_to(tmp_path / "outside.png")
    lines = [
        file_line("r.files/ok.png"),
        file_line("../outside.png"),
        file_line(str(tmp_path / "outside.png")),
        file_line("r.files/link.png"),
        file_line("r.files/missing.png"),
        file_line("r.files/../../outside.png"),
    ]
    export = folder / "r.jsonl"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Chat.from_jsonl(export)

    assert [c.messages[0].content_parts[1].data for c in loaded] == [PNG]  # type: ignore[union-attr]
    reasons = [w.message.reason for w in caught if isinstance(w.message, UnreadableRecordWarning)]
    outside = "a part refers to a file by an absolute path or one with '..': only files beside "
    assert reasons == [
        outside + "the export are read",
        outside + "the export are read",
        "a part refers to a file that leads out of the export's folder",
        "a part refers to a file beside the export that does not exist",
        outside + "the export are read",
    ]
    assert not any(str(tmp_path) in reason for reason in reasons)


def test_file_references_read_from_text_say_to_load_the_exports_path(tmp_path: Path) -> None:
    line = file_line("r.files/ok.png")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Chat.from_jsonl(line) == []

    [warning] = [w.message for w in caught if isinstance(w.message, UnreadableRecordWarning)]
    assert "these lines were not read from a file (pass the export's path)" in warning.reason
    with pytest.raises(ValidationError, match=r"refers to a file beside an export: load the"):
        Chat.from_dict(json.loads(line))
