"""Parts, tool calls and outputs in the store; the data of parts stored once, by content hash."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
from sqlalchemy import text

from jib import (
    Chat,
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    ContentText,
    FunctionCall,
    GenerateParams,
    Message,
    ToolCall,
    Usage,
)
from jib.storage import ChatStore, UnreadableRecordError, UnreadableRecordWarning, input_key
from jib.storage._engine import create_store_engine

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def image(data: bytes = PNG) -> ContentImageUrl:
    return ContentImageUrl.from_bytes(data, "image/png", detail="low")


def chat_with_parts(picture: ContentImageUrl | None = None) -> Chat:
    call = ToolCall("call_7", FunctionCall("lookup", '{"q": "cat"}'))
    return Chat(
        messages=[
            Message("system", "Look.", cache_control={"type": "ephemeral"}),
            Message(
                "user",
                [
                    ContentText("What are these?"),
                    picture or image(),
                    ContentImageUrl.from_url("https://example.com/dog.png"),
                    ContentAudioInput.from_bytes(b"RIFF" + bytes(300), "wav"),
                    ContentFile.from_bytes(b"%PDF-1.7" + bytes(300), "application/pdf"),
                ],
            ),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", "a cat", tool_call_id="call_7"),
        ],
        generated=[
            Message(
                "assistant",
                [ContentText('{"kind": "cat"}'), ContentAudioInput.from_bytes(b"OggS" * 90, "ogg")],
            )
        ],
        params=GenerateParams(tools=[{"type": "function", "function": {"name": "lookup"}}]),
        usage=Usage(7, 3, cached_input_tokens=5, reasoning_tokens=1),
        extra={"refusal": "I would rather not"},
        output={"kind": "cat"},
        metadata={"run": "parts"},
    )


def sql(store: ChatStore, statement: str, **values: object) -> list[tuple[object, ...]]:
    engine = create_store_engine(store_url_of(store))
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), values)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def store_url_of(store: ChatStore) -> str:
    return store._engine.url.render_as_string(hide_password=False)  # the test's own store


def test_parts_tool_calls_output_and_counts_round_trip(store: ChatStore) -> None:
    chat = chat_with_parts()

    store.save(chat)
    loaded = store.get(chat.id)
    stored = store.get_dict(chat.id)

    assert isinstance(loaded, Chat)
    assert loaded.messages == chat.messages and loaded.generated == chat.generated
    assert loaded.messages[1].content_parts == chat.messages[1].content_parts
    assert loaded.usage == chat.usage and loaded.output == {"kind": "cat"}
    assert loaded.extra == {"refusal": "I would rather not"}
    assert loaded.params is not None and loaded.params.tools == chat.params.tools  # type: ignore[union-attr]
    expected = chat.to_dict()
    assert {k: stored[k] for k in expected} == expected


def test_the_stored_row_refers_to_the_data_by_its_hash(store: ChatStore) -> None:
    chat = chat_with_parts()
    store.save(chat)

    [(stored_input,)] = sql(store, "SELECT input FROM jib_records")
    blobs = sql(store, "SELECT sha256, data, refs FROM jib_blobs ORDER BY sha256")

    written = stored_input if isinstance(stored_input, str) else json.dumps(stored_input)
    digest = hashlib.sha256(PNG).hexdigest()
    assert f'"jib-blob:image/png,{digest}"' in written
    assert f'"jib-blob:audio/wav,{hashlib.sha256(b"RIFF" + bytes(300)).hexdigest()}"' in written
    assert "base64" not in written and "https://example.com/dog.png" in written
    assert len(blobs) == 4 and (digest, PNG, 1) in [(d, bytes(b), n) for d, b, n in blobs]  # type: ignore[call-overload]


def test_a_thousand_chats_sharing_a_one_megabyte_image_store_it_once(store: ChatStore) -> None:
    megabyte = os.urandom(1024 * 1024)
    picture = ContentImageUrl.from_bytes(megabyte, "image/png")
    digest = hashlib.sha256(megabyte).hexdigest()
    # Chats of the same size but for the image's data: what 1,000 rows cost on this backend.
    remote = ContentImageUrl.from_url("https://example.com/" + "x" * (64 - 5) + ".png")
    assert len(remote.url) == len(f"jib-blob:image/png,{digest}")

    def chats(part: ContentImageUrl) -> list[Chat]:
        return [
            Chat(
                messages=[Message("user", [ContentText(f"Describe it ({n:03})"), part])],
                generated=[Message("assistant", "Noise.")],
            )
            for n in range(1000)
        ]

    start = database_size(store)
    store.save(chats(remote), run="control")
    rows_only = database_size(store) - start
    sharing = chats(picture)
    before = database_size(store)
    store.save(sharing[:500], run="shared")
    store.save(sharing[500:], run="shared")  # a second transaction finds the blob stored
    grown = database_size(store) - before

    assert sql(store, "SELECT refs, length(data) FROM jib_blobs") == [(1000, len(megabyte))]
    assert grown - rows_only < 1.1 * len(megabyte)  # the image costs its size, once
    if store.backend == "sqlite":  # PostgreSQL's rows alone take ~0.9 MB for 1,000 chats
        assert grown < 2_000_000
    one = store.get(sharing[421].id)
    assert isinstance(one, Chat) and one.messages == sharing[421].messages
    assert one.messages[0].content_parts[1].data == megabyte  # type: ignore[union-attr]
    loaded = store.query(run="shared")
    assert [chat.messages for chat in loaded] == [chat.messages for chat in sharing]
    assert len({id(chat.messages[0].content_parts[1]) for chat in loaded}) == 1  # held once


def database_size(store: ChatStore) -> int:
    """Bytes the database takes: the SQLite file (WAL folded in), or PostgreSQL's tables."""
    if store.path is not None:
        with sqlite3.connect(store.path) as database:
            database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return store.path.stat().st_size
    sizes = sql(
        store,
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    return int(sizes[0][0] or 0)


def test_input_key_counts_inline_data_by_its_content_hash(store: ChatStore) -> None:
    chat = chat_with_parts()
    other = chat_with_parts(image(PNG + b"!"))
    store.save([chat, other], run="keys")

    stored = {result.id: result.input_key for result in store.stored_results("keys")}

    sent = [message.to_dict() for message in chat.messages]
    assert stored[chat.id] == input_key(sent)
    assert stored[other.id] == input_key([m.to_dict() for m in other.messages])
    assert stored[chat.id] != stored[other.id]
    text_only = [{"role": "user", "content": "hi"}]
    assert input_key(text_only) == hashlib.sha256(b'[{"content":"hi","role":"user"}]').hexdigest()


def test_deleting_the_last_chat_that_uses_a_blob_deletes_the_blob(store: ChatStore) -> None:
    first, second = chat_with_parts(), chat_with_parts()
    store.save([first, second])
    assert sql(store, "SELECT count(*), min(refs), max(refs) FROM jib_blobs") == [(4, 2, 2)]

    store.delete([first.id])
    assert sql(store, "SELECT count(*), min(refs), max(refs) FROM jib_blobs") == [(4, 1, 1)]
    assert store.get(second.id).messages == second.messages  # type: ignore[attr-defined]

    store.delete([second.id])
    assert sql(store, "SELECT count(*) FROM jib_blobs") == [(0,)]


def test_saving_a_chat_again_without_its_image_lets_the_image_go(store: ChatStore) -> None:
    chat = Chat(messages=[Message("user", ["Look", image()])])
    store.save(chat)

    chat.messages = [Message("user", "Never mind")]
    store.save(chat)

    assert sql(store, "SELECT count(*) FROM jib_blobs") == [(0,)]
    assert store.get(chat.id).messages == [Message("user", "Never mind")]  # type: ignore[attr-defined]


def test_a_chat_whose_blob_is_missing_is_unreadable_and_the_rest_load(store: ChatStore) -> None:
    lost = Chat(messages=[Message("user", ["Look", image(PNG + b"lost")])])
    kept = chat_with_parts()
    store.save([lost, kept], run="r")
    digest = hashlib.sha256(PNG + b"lost").hexdigest()
    sql(store, "DELETE FROM jib_blobs WHERE sha256 = :digest", digest=digest)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = store.query(run="r")
        dicts = list(store.iter_dicts(run="r"))

    assert [chat.id for chat in loaded] == [kept.id] == [d["id"] for d in dicts]
    skipped = [w.message for w in caught if isinstance(w.message, UnreadableRecordWarning)]
    assert [w.record_id for w in skipped] == [lost.id, lost.id]
    assert skipped[0].reason == (
        f"its input (messages or text) column refers to stored data (sha256 {digest[:12]}…) "
        "that is not in the store"
    )
    with pytest.raises(UnreadableRecordError, match=r"refers to stored data .* not in the store"):
        store.get(lost.id)
    with pytest.raises(UnreadableRecordError):
        store.get_dict(lost.id)


def test_a_chat_whose_blob_was_altered_is_unreadable(store: ChatStore) -> None:
    chat = Chat(messages=[Message("user", ["Look", image()])])
    store.save(chat)
    sql(store, "UPDATE jib_blobs SET data = :data", data=b"not the image")

    altered = r"sha256 [0-9a-f]{12}…\) that has been altered"
    with pytest.raises(UnreadableRecordError, match=altered):
        store.get(chat.id)


def test_a_malformed_reference_is_unreadable(store: ChatStore) -> None:
    chat = Chat(messages=[Message("user", ["Look", image()])])
    store.save(chat)
    row = sql(store, "SELECT input FROM jib_records")[0][0]
    written = row if isinstance(row, str) else json.dumps(row)
    broken = written.replace("jib-blob:image/png,", "jib-blob:image/png")
    cast = "CAST(:input AS JSONB)" if store.backend == "postgresql" else ":input"
    sql(store, f"UPDATE jib_records SET input = {cast}", input=broken)

    with pytest.raises(UnreadableRecordError, match="broken jib-blob reference"):
        store.get(chat.id)


def test_inline_data_jib_does_not_write_stays_inline_and_exact(store: ChatStore) -> None:
    # "QR==" decodes like "QQ==": swapping it for its bytes would change the text.
    odd_audio = ContentAudioInput("QR==", "wav")
    looks_like_data = Message("user", "data:image/png;base64,iVBORw0KGgo=")
    chat = Chat(messages=[Message("user", ["Hear", odd_audio]), looks_like_data])

    store.save(chat)

    assert store.get(chat.id).messages == chat.messages  # type: ignore[attr-defined]
    assert sql(store, "SELECT count(*) FROM jib_blobs") == [(0,)]


def test_writers_sharing_an_image_and_a_deleter_lose_nothing(
    store: ChatStore, store_url: str, tmp_path: Path
) -> None:
    # Saves that find the blob stored race a delete that may collect it: every kept chat
    # still reads (on PostgreSQL the advisory locks order them; SQLite has one writer).
    import subprocess
    import sys

    script = r"""
import sys
from jib import Chat, ContentImageUrl, Message
from jib.storage import open_store
url, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
picture = ContentImageUrl.from_bytes(b"shared image" * 1000, "image/png")
with open_store(url) as store:
    for i in range(40):
        chat = Chat(messages=[Message("user", [f"{name} {i}", picture])], id=f"{name}{i:04d}")
        store.save(chat, run=name)
        if mode == "delete":
            store.delete([chat.id])
"""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url, name, mode],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, mode in (("keep", "keep"), ("gone", "delete"), ("also", "keep"))
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableRecordWarning)
        kept = store.query(run="keep") + store.query(run="also")
    assert len(kept) == 80 and store.count(run="gone") == 0
    assert sql(store, "SELECT refs FROM jib_blobs") == [(80,)]


def test_flat_exports_show_the_text_of_messages_of_parts(store: ChatStore, tmp_path: Path) -> None:
    chat = chat_with_parts()
    store.save(chat)

    frame = store.to_dataframe()
    store.export_parquet(tmp_path / "r.parquet")
    store.export_csv(tmp_path / "r.csv")

    assert (frame["prompt"][0], frame["response"][0]) == ("a cat", '{"kind": "cat"}')
    assert frame["messages"][0] == chat.to_dict()["messages"]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "r.parquet").column("prompt").to_pylist() == ["a cat"]
    assert "What are these?" in (tmp_path / "r.csv").read_text(encoding="utf-8")


def test_a_completion_keeps_the_cache_and_reasoning_counts(store: ChatStore) -> None:
    from jib import Completion

    completion = Completion(text="a", generated="b", usage=Usage(5, 2, cache_write_tokens=4))
    plain = Completion(text="c", generated="d", usage=Usage(1, 1))
    store.save([completion, plain])

    assert store.get(completion.id).usage == Usage(5, 2, cache_write_tokens=4)
    assert store.get_dict(plain.id)["usage"] == {
        "input_tokens": 1,
        "output_tokens": 1,
        "total_tokens": 2,
    }
