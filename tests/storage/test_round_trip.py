"""Saving and loading records: every field survives, and the generator comes back ready to use."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jib import Chat, Completion, GenerateParams, Message, StoredError, Usage
from jib.storage import ChatStore, RecordNotFoundError
from jib.testing import AlwaysFailGenerator, EchoGenerator


def full_chat() -> Chat:
    generator = EchoGenerator(model="demo/é,x", prefix="» ")
    params = GenerateParams(
        temperature=0.25, max_tokens=64, stop=["###", ";;"], seed=7, extra={"logprobs": True}
    )
    return Chat(
        generator=generator,
        params=params,
        messages=[Message("system", "Be brief."), Message("user", "Héllo, wörld! 👋")],
        generated=[Message("assistant", "» Héllo, wörld! 👋")],
        stop_reason="length",
        usage=Usage(5, 3),
        latency_ms=123.5,
        attempts=2,
        cost_usd=0.00042,
        metadata={
            "tags": ["eval", "ünïcode"],
            "nested": {"a": [1, 2.5, None]},
            "prompt_id": "q-7",
            "sample_index": 3,
        },
        extra={"provider_field": "x"},
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    )


def test_chat_with_every_field_round_trips(store: ChatStore) -> None:
    chat = full_chat()
    store.save(chat, run="r1")

    loaded = store.get(chat.id)

    assert isinstance(loaded, Chat)
    assert loaded.to_dict() == chat.to_dict()
    assert loaded.timestamp == chat.timestamp
    assert loaded.usage == Usage(5, 3, 8)
    assert (loaded.latency_ms, loaded.attempts, loaded.cost_usd) == (123.5, 2, 0.00042)
    assert loaded.params == chat.params
    # The identifier carries the params the chat was made with, so the rebuilt generator has them.
    assert loaded.generator == chat.generator.model_copy(update={"params": chat.params})


async def test_loaded_chat_continues_with_its_rebuilt_generator(store: ChatStore) -> None:
    chat = await EchoGenerator(model="demo", prefix="> ").chat("first").run()
    store.save(chat)

    loaded = store.get(chat.id)
    follow_up = await loaded.continue_("second").run()

    assert isinstance(loaded.generator, EchoGenerator)
    assert loaded.generator.prefix == "> "
    assert [m.content for m in follow_up.all] == ["first", "> first", "second", "> second"]


def test_failed_chat_round_trips_with_its_error(store: ChatStore) -> None:
    chat = Chat(
        generator=AlwaysFailGenerator(model="x", error="RateLimitError"),
        messages=[Message("user", "hi")],
        failed=True,
        error=ValueError("slow down"),
    )
    store.save(chat)

    loaded = store.get(chat.id)

    assert loaded.failed
    assert isinstance(loaded.error, StoredError)
    assert (loaded.error.type_name, loaded.error.message) == ("ValueError", "slow down")
    assert loaded.to_dict() == chat.to_dict()


def test_completion_round_trips(store: ChatStore) -> None:
    completion = Completion(
        generator=EchoGenerator(model="demo"),
        text="Once upon",
        generated=" a time",
        stop_reason="stop",
        usage=Usage(2, 3),
    )
    store.save(completion, run="texts")

    [loaded] = store.query(run="texts")

    assert isinstance(loaded, Completion)
    assert loaded.to_dict() == completion.to_dict()
    assert loaded.all == "Once upon a time"


def test_record_without_generator_round_trips(store: ChatStore) -> None:
    chat = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "yo")])
    store.save(chat)

    loaded = store.get(chat.id)

    assert loaded.generator is None
    assert loaded.generator_id is None
    assert loaded.to_dict() == chat.to_dict()


def test_saving_again_replaces_instead_of_duplicating(store: ChatStore) -> None:
    chat = full_chat()
    store.save(chat, run="a")
    chat.metadata["note"] = "edited"
    store.save([chat, chat], run="a")

    assert store.count() == 1
    assert store.get(chat.id).metadata["note"] == "edited"


def test_explicit_tags_join_the_metadata_tags(store: ChatStore) -> None:
    chat = full_chat()
    store.save(chat, tags=["extra", "eval"])

    assert store.get(chat.id).metadata["tags"] == ["eval", "ünïcode", "extra"]
    assert store.count(tag="extra") == store.count(tag="ünïcode") == 1


def test_run_defaults_to_the_records_metadata(store: ChatStore) -> None:
    chat = Chat(messages=[Message("user", "hi")], metadata={"run": "from-meta"})
    store.save(chat)

    assert store.count(run="from-meta") == 1


def test_get_accepts_a_unique_id_prefix(store: ChatStore) -> None:
    chat = full_chat()
    store.save(chat)

    assert store.get(chat.id[:6].upper()).id == chat.id


def test_get_unknown_id_raises_record_not_found(store: ChatStore) -> None:
    with pytest.raises(RecordNotFoundError, match="no stored chat or completion has the id 'beef'"):
        store.get("beef")


def test_get_ambiguous_prefix_asks_for_more_characters(store: ChatStore) -> None:
    store.save([Chat(id="abcd" + "0" * 28), Chat(id="abcd" + "1" * 28)])

    with pytest.raises(RecordNotFoundError, match="more than one"):
        store.get("abcd")


def test_save_rejects_what_is_not_a_record(store: ChatStore) -> None:
    with pytest.raises(TypeError, match="not dict"):
        store.save([{"id": "x"}])  # type: ignore[list-item]


def test_saving_nothing_is_a_no_op(store: ChatStore) -> None:
    assert store.save([]) == 0
    assert store.count() == 0


def test_timestamps_come_back_in_utc_whatever_zone_they_were_made_in(store: ChatStore) -> None:
    zone = timezone(timedelta(hours=5, minutes=30))
    chat = Chat(timestamp=datetime(2025, 6, 1, 12, 0, tzinfo=zone))
    store.save(chat)

    loaded = store.get(chat.id)

    assert loaded.timestamp == chat.timestamp
    assert loaded.timestamp.utcoffset() == timedelta(0)


def test_delete_removes_records_and_their_tags(store: ChatStore) -> None:
    chat = full_chat()
    store.save(chat)

    assert store.delete([chat.id, "missing"]) == 1
    assert store.count() == 0
    assert store.count(tag="eval") == 0


def test_prompt_id_and_sample_index_are_columns_of_the_record_dict(store: ChatStore) -> None:
    numbered = Chat(metadata={"prompt_id": 12, "sample_index": 1})
    odd = Chat(metadata={"prompt_id": {"not": "an id"}, "sample_index": True})
    store.save([numbered, odd, Chat()], run="r")

    dicts = {d["id"]: d for d in store.iter_dicts(run="r")}

    assert (dicts[numbered.id]["prompt_id"], dicts[numbered.id]["sample_index"]) == ("12", 1)
    assert (dicts[odd.id]["prompt_id"], dicts[odd.id]["sample_index"]) == (None, None)
    assert dicts[odd.id]["metadata"] == odd.metadata
    assert Chat.from_dict(dicts[numbered.id]).metadata == numbered.metadata
