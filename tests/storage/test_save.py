"""Saving at the driver's pace: rows written once, read back exactly, replaced and refused as
before (`jib.storage._encode`, `jib.storage._insert`)."""

from __future__ import annotations

import asyncio
import enum
import json
import math
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jib import Chat, Completion, GenerateParams, Message, Usage
from jib.chat import UnwritableRecordError
from jib.storage import ChatStore, StoreError, open_store
from jib.storage.store import ON_LOOP_MOST
from jib.testing import EchoGenerator
from tests.storage.test_parts import chat_with_parts, image, sql

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def echo_chats(count: int, **fields: Any) -> list[Chat]:
    """Chats of one generator and one params object, as a pipeline's batch makes them."""
    generator = EchoGenerator(model="bulk", params=GenerateParams(temperature=0.5))
    params = generator.params
    return [
        Chat(
            generator=generator,
            params=params,
            messages=[Message("user", f"prompt {i}")],
            generated=[Message("assistant", f"prompt {i}")],
            usage=Usage(2, 2),
            latency_ms=1.5,
            **fields,
        )
        for i in range(count)
    ]


def stored_dict(store: ChatStore, record_id: str) -> dict[str, Any]:
    data = store.get_dict(record_id)
    for name in ("run", "prompt_id", "sample_index"):
        data.pop(name)
    return data


def test_a_batch_reads_back_as_its_records_dicts(store: ChatStore) -> None:
    chats = echo_chats(30)

    assert store.save(chats) == 30

    assert [stored_dict(store, c.id) for c in chats] == [c.to_dict() for c in chats]
    assert {c.generator_id for c in store.query()} == {"echo!bulk,temperature=0.5"}


def test_a_mixed_batch_keeps_every_column_and_its_order(store: ChatStore) -> None:
    """Columns empty in some rows and not others, chats and completions, in one save."""
    chats = echo_chats(3)
    failed = Chat(messages=[Message("user", "x")], failed=True, error=ValueError("no"), cost_usd=2)
    completion = Completion(text="once", generated=" upon", attempts=3)
    tagged = Chat(metadata={"prompt_id": 7, "sample_index": 1, "tags": ["t"]}, output={"a": 1})
    batch = [chats[0], failed, completion, chats[1], tagged, chats[2]]
    for record in batch:
        record.timestamp = T0  # one time: insertion order decides

    store.save(batch, run="r")

    assert [r.id for r in store.query(run="r")] == [r.id for r in batch]
    assert [stored_dict(store, r.id) for r in batch] == [r.to_dict() for r in batch]
    assert store.get_dict(tagged.id)["prompt_id"] == "7"
    assert store.count(tag="t") == 1 and store.count(failed=True) == 1
    assert store.runs()[0]["unreadable"] == 0


def test_a_float_column_given_an_int_stores_a_float(store: ChatStore) -> None:
    chat = Chat(latency_ms=7, cost_usd=1)
    store.save(chat)

    loaded = store.get(chat.id)

    assert (loaded.latency_ms, loaded.cost_usd) == (7.0, 1.0)
    assert type(loaded.latency_ms) is float and type(loaded.cost_usd) is float


def test_saving_an_existing_id_replaces_it_and_its_tags(store: ChatStore) -> None:
    chat = echo_chats(1, metadata={"tags": ["old"]})[0]
    store.save(chat, run="r1")

    chat.generated = [Message("assistant", "changed")]
    chat.metadata = {"tags": ["new"]}
    store.save(chat, run="r2")

    assert store.count() == 1
    assert store.get(chat.id).content == "changed"
    assert (store.count(tag="old"), store.count(tag="new"), store.count(run="r2")) == (0, 1, 1)


def test_replacing_deletes_the_replaced_records_in_the_same_save(store: ChatStore) -> None:
    old, other = echo_chats(2)
    store.save([old, other])
    retry = echo_chats(1)[0]

    store.save(retry, replacing=[old.id, "no-such-id"])

    assert sorted(r.id for r in store.query()) == sorted([other.id, retry.id])


def test_blob_counts_follow_a_replaced_chat(store: ChatStore) -> None:
    first = chat_with_parts()
    store.save(first)
    counts = "SELECT count(*), min(refs), max(refs) FROM jib_blobs"
    assert sql(store, counts) == [(4, 1, 1)]

    store.save(first)  # the same chat again: the same blobs, counted once
    assert sql(store, counts) == [(4, 1, 1)]

    second = chat_with_parts(image(b"another picture"))
    second.id = first.id  # replaces it: its old image goes, the new one comes
    store.save(second)
    assert sql(store, counts) == [(4, 1, 1)]
    assert store.get(first.id).messages == second.messages  # type: ignore[attr-defined]

    retry = chat_with_parts(image(b"another picture"))
    store.save(retry, replacing=[first.id])
    assert sql(store, counts) == [(4, 1, 1)]
    assert store.count() == 1


def test_lone_surrogates_are_stored_escaped_in_every_column(store: ChatStore) -> None:
    chat = Chat(
        generator=EchoGenerator(model="m\ud800"),
        messages=[Message("user", "bad \ud800 here")],
        generated=[Message("assistant", "\udcff")],
        failed=True,
        error=ValueError("lost \udfff"),
        metadata={"k\ud800": ["v\udcff"], "prompt_id": "p\ud800"},
        extra={"x": "\udc80"},
    )

    store.save(chat, run="r\ud800", tags=["t\udcff"])
    [loaded] = store.iter_dicts()

    assert chat.messages[0].content == "bad \ud800 here"  # the record in memory is untouched
    assert loaded["messages"] == [{"role": "user", "content": "bad \\ud800 here"}]
    assert loaded["generated"] == [{"role": "assistant", "content": "\\udcff"}]
    assert loaded["error"]["message"] == "lost \\udfff"
    assert loaded["metadata"] == {
        "k\\ud800": ["v\\udcff"],
        "prompt_id": "p\\ud800",
        "tags": ["t\\udcff"],
    }
    assert loaded["extra"] == {"x": "\\udc80"}
    assert (loaded["run"], loaded["prompt_id"]) == ("r\\ud800", "p\\ud800")
    assert store.count(tag="t\\udcff") == 1


def test_text_beyond_ascii_reads_back_the_same(store: ChatStore) -> None:
    words = "Héllo wörld 👋 \u2028 \x1f \x7f ünïcode"
    chat = Chat(messages=[Message("user", words)], metadata={"ключ": words})

    store.save(chat)

    assert stored_dict(store, chat.id) == chat.to_dict()


def test_values_json_writes_another_way_are_stored_as_json_writes_them(store: ChatStore) -> None:
    """A key that is not a string, an integer beyond 64 bits, a tuple, a subclass of dict."""

    class Mapping(dict):  # type: ignore[type-arg]
        pass

    chat = Chat(metadata={1: "one", "big": 2**70, "pair": (1, 2), "sub": Mapping(a=1)})

    store.save(chat)

    assert store.get(chat.id).metadata == {
        "1": "one",
        "big": 2**70,
        "pair": [1, 2],
        "sub": {"a": 1},
    }


def test_a_uuid_and_an_enum_member_are_stored_as_to_json_writes_them(store: ChatStore) -> None:
    class Colour(enum.Enum):
        RED = "red"

    chat = Chat(metadata={"request": uuid.UUID(int=1), "colour": Colour.RED})

    store.save(chat)

    stored = store.get(chat.id).metadata
    assert stored == json.loads(chat.to_json())["metadata"]
    assert stored == {"request": "00000000-0000-0000-0000-000000000001", "colour": "red"}


def test_a_value_with_no_json_form_is_refused_and_nothing_is_saved(store: ChatStore) -> None:
    good = Chat(messages=[Message("user", "fine")])
    bad = Chat(metadata={"when": object()})

    with pytest.raises(StoreError, match=r"Object of type object is not JSON serializable$"):
        store.save([good, bad])

    assert store.count() == 0
    store.save(good)  # the store is still usable
    assert store.count() == 1


def test_a_circular_value_is_refused_with_json_s_message(store: ChatStore) -> None:
    loop: list[Any] = []
    loop.append(loop)

    with pytest.raises(StoreError, match=r"Circular reference detected$"):
        store.save(Chat(extra={"loop": loop}))


def test_an_output_with_no_json_form_is_refused_before_anything_is_written(
    store: ChatStore,
) -> None:
    with pytest.raises(UnwritableRecordError, match=r"output \(a object\) has no JSON form"):
        store.save([Chat(), Chat(output=object())])

    assert store.count() == 0


def test_a_latency_that_is_not_a_number_is_refused(store: ChatStore) -> None:
    chat = Chat()
    chat.latency_ms = "soon"  # type: ignore[assignment]

    with pytest.raises(StoreError, match=r"could not convert string to float"):
        store.save(chat)


def test_not_a_number_round_trips_in_sqlite_and_is_refused_by_postgresql(store: ChatStore) -> None:
    """As `json.dumps` wrote it: the literal `NaN`, which only SQLite's JSON text keeps."""
    chat = Chat(metadata={"score": math.nan, "high": math.inf, "none": None})

    if store.backend == "postgresql":
        with pytest.raises(StoreError, match="invalid input syntax for type json"):
            store.save(chat)
        assert store.count() == 0
        return
    store.save(chat)
    metadata = store.get(chat.id).metadata
    assert math.isnan(metadata["score"]) and metadata["high"] == math.inf
    assert metadata["none"] is None


def test_a_nul_character_round_trips_in_sqlite_and_is_refused_by_postgresql(
    store: ChatStore,
) -> None:
    chat = Chat(messages=[Message("user", "a\x00b")])

    if store.backend == "postgresql":  # jsonb holds no \u0000
        with pytest.raises(StoreError, match="unsupported Unicode escape sequence"):
            store.save(chat)
        assert store.count() == 0
        return
    store.save(chat)
    assert store.get(chat.id).messages == chat.messages


def test_json_columns_are_json_the_database_reads(store: ChatStore) -> None:
    chat, completion = echo_chats(1)[0], Completion(text="a", generated="b")
    store.save([chat, completion])

    if store.backend == "sqlite":
        shapes = "SELECT kind, json_type(input), json_type(meta), output IS NULL FROM jib_records"
    else:
        shapes = (
            "SELECT kind, jsonb_typeof(input), jsonb_typeof(meta), output IS NULL FROM jib_records"
        )
    rows = sorted(sql(store, shapes), key=lambda row: str(row[0]))

    kinds = {"sqlite": "text", "postgresql": "string"}
    assert rows == [
        ("chat", "array", "object", True),
        ("completion", kinds[store.backend], "object", True),
    ]


def test_params_none_is_stored_as_json_null(store: ChatStore) -> None:
    chat = Chat()
    store.save(chat)

    [(params,)] = sql(store, "SELECT params FROM jib_records")

    assert (
        params is None or json.loads(str(params)) is None
    )  # PostgreSQL hands JSON null over parsed
    assert store.get(chat.id).params is None


def test_times_in_any_zone_are_stored_in_utc_and_filter_as_before(store: ChatStore) -> None:
    plus_five = timezone(timedelta(hours=5))
    chats = [
        Chat(timestamp=T0),
        Chat(timestamp=datetime(2026, 1, 2, 8, 4, 6, tzinfo=plus_five)),  # 03:04:06 UTC
        Chat(timestamp=datetime(2026, 1, 2, 3, 4, 7, 250)),  # naive: UTC
    ]
    store.save(chats)

    assert [c.timestamp for c in store.query()] == [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2, microseconds=250),
    ]
    assert store.count(since=T0 + timedelta(seconds=1)) == 2
    assert store.count(until=T0 + timedelta(seconds=2)) == 2


def test_a_tag_left_behind_by_a_record_deleted_by_hand_does_not_block_a_save(
    store: ChatStore,
) -> None:
    if store.backend == "postgresql":
        pytest.skip("PostgreSQL enforces the tags' foreign key: no tag outlives its record")
    chat = Chat(metadata={"tags": ["keep"]})
    store.save(chat)
    sql(store, "DELETE FROM jib_records")

    store.save(chat)

    assert store.count(tag="keep") == 1


def test_a_later_duplicate_in_one_batch_wins(store: ChatStore) -> None:
    first, second = echo_chats(2)
    second.id = first.id

    assert store.save([first, second]) == 1

    assert store.count() == 1
    assert store.get(first.id).content == second.content


REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON jib_records WHEN NEW.id = 'refused' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.id = 'refused' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON jib_records FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


def test_a_row_the_database_refuses_fails_the_whole_save_and_the_store_goes_on(
    store: ChatStore,
) -> None:
    kept = echo_chats(1)[0]
    store.save(kept)
    for statement in REFUSE[store.backend]:
        sql(store, statement)
    refused = Chat(id="refused")

    with pytest.raises(StoreError, match="refused by a trigger"):
        store.save([*echo_chats(3), refused], tags=["t"])

    assert [r.id for r in store.query()] == [kept.id]
    assert store.count(tag="t") == 0
    store.save(echo_chats(2))
    assert store.count() == 3


@pytest.mark.parametrize("count", [ON_LOOP_MOST, ON_LOOP_MOST + 1])
async def test_asave_stores_a_batch_small_or_big_as_save_does(store: ChatStore, count: int) -> None:
    """A small SQLite save is written on the loop, a big one (and PostgreSQL's) in a thread:
    the same rows either way, replacements included."""
    old = echo_chats(2)
    store.save(old, tags=["old"])
    chats = echo_chats(count)

    saved = await store.asave(chats, run="r", tags=["t"], replacing=[old[0].id])

    assert saved == count
    assert store.count(run="r", tag="t") == count
    assert [r.id for r in store.query(tag="old")] == [old[1].id]
    assert [stored_dict(store, c.id) for c in chats[:3]] == [
        {**c.to_dict(), "metadata": {"tags": ["t"]}} for c in chats[:3]
    ]


async def test_a_refused_asave_fails_whole_and_the_store_goes_on(store: ChatStore) -> None:
    for statement in REFUSE[store.backend]:
        sql(store, statement)

    with pytest.raises(StoreError, match="refused by a trigger"):
        await store.asave([*echo_chats(3), Chat(id="refused")], tags=["t"])

    assert store.count() == 0
    assert await store.asave(echo_chats(2)) == 2


async def test_asave_waits_for_another_sqlite_writer_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jib.db"
    with open_store(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process's writer holds the file
        saving = asyncio.create_task(store.asave(echo_chats(3)))
        ticks = 0
        while ticks < 5:  # the loop goes on while the save waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not saving.done()
        blocker.rollback()
        blocker.close()

        assert await saving == 3
        assert store.count() == 3
