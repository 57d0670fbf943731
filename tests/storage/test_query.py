"""Querying: by run, model, tag, failed, time range and kind; pipelines saving through `watch`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jib import Chat, Message
from jib.errors import RateLimitError
from jib.storage import ChatStore
from jib.testing import AlwaysFailGenerator, EchoGenerator, FixedGenerator

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def chat_at(minutes: int, **fields: object) -> Chat:
    return Chat(
        messages=[Message("user", f"prompt {minutes}")],
        timestamp=T0 + timedelta(minutes=minutes),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def filled(store: ChatStore) -> ChatStore:
    echo = EchoGenerator(model="demo")
    fixed = FixedGenerator(model="demo", text="ok")
    store.save(
        [
            chat_at(0, generator=echo, metadata={"tags": ["a"]}),
            chat_at(1, generator=echo, failed=True, error=RuntimeError("x")),
            chat_at(2, generator=fixed, metadata={"tags": ["a", "b"]}),
        ],
        run="one",
    )
    store.save([chat_at(3, generator=EchoGenerator(model="other"))], run="two")
    store.save([chat_at(4)])
    return store


def minutes(chats: list[object]) -> list[int]:
    return [int((c.timestamp - T0).total_seconds() // 60) for c in chats]  # type: ignore[attr-defined]


def test_query_by_run(filled: ChatStore) -> None:
    assert minutes(filled.query(run="one")) == [0, 1, 2]
    assert minutes(filled.query(run="two")) == [3]
    assert filled.count() == 5


def test_query_by_model_name_or_provider_and_model(filled: ChatStore) -> None:
    assert minutes(filled.query(model="demo")) == [0, 1, 2]
    assert minutes(filled.query(model="echo!demo")) == [0, 1]
    assert minutes(filled.query(model="fixed!demo")) == [2]
    assert filled.query(model="nope") == []


def test_query_by_generator_identifier(filled: ChatStore) -> None:
    assert minutes(filled.query(generator_id="echo!other")) == [3]


def test_query_by_tag(filled: ChatStore) -> None:
    assert minutes(filled.query(tag="a")) == [0, 2]
    assert minutes(filled.query(tag="b")) == [2]


def test_query_by_failed(filled: ChatStore) -> None:
    assert minutes(filled.query(failed=True)) == [1]
    assert minutes(filled.query(failed=False, run="one")) == [0, 2]


def test_query_by_time_range_is_half_open(filled: ChatStore) -> None:
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    assert minutes(filled.query(since=since, until=until)) == [1, 2]


def test_query_time_range_accepts_other_zones_and_naive_utc(filled: ChatStore) -> None:
    zone = timezone(timedelta(hours=-5))
    since = (T0 + timedelta(minutes=2)).astimezone(zone)
    assert minutes(filled.query(since=since)) == [2, 3, 4]
    assert minutes(filled.query(until=datetime(2025, 3, 1, 0, 1))) == [0]


def test_query_newest_first_with_limit(filled: ChatStore) -> None:
    assert minutes(filled.query(newest_first=True, limit=2)) == [4, 3]


def test_filters_combine(filled: ChatStore) -> None:
    assert minutes(filled.query(run="one", tag="a", model="echo!demo")) == [0]
    assert filled.count(run="one", failed=True, tag="a") == 0


async def test_query_by_kind(store: ChatStore) -> None:
    await EchoGenerator(model="demo").complete("text").watch(store.watch()).run()
    store.save(Chat(messages=[Message("user", "hi")]))

    assert [r["kind"] for r in store.iter_dicts(kind="completion")] == ["completion"]
    assert store.count(kind="chat") == 1


async def test_watch_stores_every_finished_chat_including_failures(store: ChatStore) -> None:
    ok = EchoGenerator(model="demo").chat().meta(tags=["batch"]).watch(store.watch(run="r"))
    bad = AlwaysFailGenerator(model="down").chat().watch(store.watch(run="r", tags=["bad"]))

    chats = await ok.run_batch(["a", "b", "c"], on_failed="include")
    failed = await bad.run_batch(["d"], on_failed="skip")

    assert failed == []
    stored = store.query(run="r")
    assert {c.id for c in stored} == {c.id for c in chats} | {
        c.id for c in store.query(failed=True)
    }
    assert store.count(run="r", failed=True, tag="bad") == 1
    assert [c.content for c in store.query(run="r", tag="batch")] == ["a", "b", "c"]


def test_last_is_the_newest_successful_chat(filled: ChatStore) -> None:
    filled.save(chat_at(9, failed=True, error=RuntimeError("late failure")))
    last = filled.last()
    assert last is not None
    assert minutes([last]) == [4]


def test_last_on_an_empty_store_is_none(store: ChatStore) -> None:
    assert store.last() is None


def test_stored_results_list_each_record_of_a_run_with_its_prompt_id(store: ChatStore) -> None:
    from jib.storage import input_key

    echo = EchoGenerator(model="demo")
    same = [Chat(generator=echo, messages=[Message("user", "same")]) for _ in range(2)]
    failed = Chat(
        generator=echo,
        messages=[Message("user", "other")],
        failed=True,
        error=RateLimitError("slow down", status_code=429),
        metadata={"prompt_id": "q7", "sample_index": 2},
    )
    store.save([*same, failed], run="r")
    store.save(Chat(generator=echo), run="elsewhere")

    results = store.stored_results("r")

    assert [r.id for r in results] == [c.id for c in [*same, failed]]
    assert results[0].generator_id == "echo!demo"
    assert results[0].input_key == input_key([{"role": "user", "content": "same"}])
    assert (results[0].prompt_id, results[0].sample_index, results[0].failed) == (None, None, False)
    assert (results[2].prompt_id, results[2].sample_index) == ("q7", 2)
    assert (results[2].failed, results[2].error_type) == (True, "RateLimitError")
    assert store.stored_results("nothing") == []


def test_saving_a_replacement_deletes_what_it_replaces_in_one_go(store: ChatStore) -> None:
    failure = Chat(failed=True, error=RuntimeError("down"), metadata={"tags": ["old"]})
    keep = Chat()
    store.save([failure, keep], run="r")

    store.save(Chat(metadata={"prompt_id": "1"}), run="r", tags=["new"], replacing=[failure.id])

    assert failure.id not in {c.id for c in store.query(run="r")}
    assert store.count(run="r") == 2
    assert store.count(failed=True) == 0
    assert store.count(tag="old") == 0
    assert store.count(tag="new") == 1


def test_runs_summarize_each_run_newest_first(filled: ChatStore) -> None:
    summary = filled.runs()
    assert [(s["run"], s["records"], s["failed"]) for s in summary] == [
        ("two", 1, 0),
        ("one", 3, 1),
    ]
    assert summary[1]["first"] == T0
    assert summary[1]["last"] == T0 + timedelta(minutes=2)
    assert summary[1]["generators"] == ["echo!demo", "fixed!demo,text=ok"]
    assert (summary[1]["cost_usd"], summary[1]["priced"]) == (None, 0)


def test_runs_sum_the_known_costs(store: ChatStore) -> None:
    store.save([Chat(cost_usd=0.25), Chat(cost_usd=0.5), Chat()], run="priced")

    [summary] = store.runs()

    assert (summary["cost_usd"], summary["priced"], summary["records"]) == (0.75, 2, 3)
