"""One bad record never spoils the rest (issue 16 items 10 and 11).

Anyone who can write to a shared store or hand over a JSON Lines file can plant a record this
jib cannot read: text that is not JSON in a JSON column, a field of the wrong shape, a record
"from a newer jib", a spec that does not compile. Such a record is *unreadable*: skipped with an
`UnreadableRecordWarning` naming its id and saying why, and counted, in the store (`query`,
`iter_dicts`, the exports, `last`; `get` raises `UnreadableRecordError`), in the batch loaders
(`Chat.from_dicts`, `Chat.from_jsonl`) and in every CLI view. A record whose generator cannot be
rebuilt still loads without it (today's rule of issue 12). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import jib
from jib.chat import Chat, Completion, UnreadableRecordError, UnreadableRecordWarning
from jib.errors import GeneratorWarning, InvalidGeneratorError, JibError
from jib.messages import Message
from jib.storage import ChatStore, open_store
from jib.testing import EchoGenerator
from tests.cli.conftest import JibRunner, Result, isolated_env, make_runner
from tests.storage.postgres import empty_postgres, postgres_url

__all__ = ["postgres_url"]

# 25 nested loops: Python's compiler refuses the template it makes ("too many statically nested
# blocks"), a bare SyntaxError before issue 16.
NESTED = "".join(f"{{% for a{i} in [1] %}}" for i in range(25)) + "x" + "{% endfor %}" * 25
_SPEC = {
    "request": {"url": "http://127.0.0.1:9/", "transforms": [{"type": "jinja", "pattern": NESTED}]},
    "response": {"transforms": [{"type": "jinja", "pattern": "{{ result }}"}]},
}
UNCOMPILABLE = "http!m,spec=" + base64.b64encode(json.dumps(_SPEC).encode()).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store: a new SQLite file, or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jib.db'}"
    return empty_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[ChatStore]:
    with open_store(store_url) as opened:
        yield opened


def good_chat(text_: str, prompt_id: str) -> Chat:
    record = Chat(
        messages=[Message("user", text_)],
        generated=[Message("assistant", text_.upper())],
        stop_reason="stop",
        metadata={"prompt_id": prompt_id},
    )
    record.generator = EchoGenerator(model="m")
    return record


@pytest.fixture
def planted(store: ChatStore) -> tuple[list[Chat], Chat]:
    """Three good chats of run `r` and, between them in time, one to be broken by a test."""
    chats = [good_chat(word, str(i)) for i, word in enumerate(["first", "bad", "second", "last"])]
    for index, record in enumerate(chats):
        record.timestamp = record.timestamp.replace(year=2030 + index)
    store.save(chats, run="r")
    bad = chats.pop(1)
    return chats, bad


def corrupt(url: str, record_id: str, column: str, value: Any) -> None:
    """Set a column of a stored row to `value`, as a hand edit or another writer might."""
    engine = create_engine(url)  # the same database, outside the store's code
    postgres = engine.dialect.name == "postgresql"
    json_columns = {"params", "input", "generated", "meta", "extra"}
    placeholder = "CAST(:v AS JSONB)" if postgres and column in json_columns else ":v"
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE jib_records SET {column} = {placeholder} WHERE id = :id"),
            {"v": value, "id": record_id},
        )
    engine.dispose()


@dataclass(frozen=True)
class Corruption:
    column: str
    value: Any
    reason: str
    sqlite_only: bool = False
    database_tells: bool = True  # `runs()` can count it without loading the record


CORRUPTIONS = {
    "metadata-not-json": Corruption(
        "meta", "{not json", "its metadata column is not JSON", sqlite_only=True
    ),
    "messages-not-json": Corruption(
        "input", "[{", "its input (messages or text) column is not JSON", sqlite_only=True
    ),
    "metadata-an-array": Corruption("meta", "[1, 2]", "metadata: Input should be a valid dict"),
    "generated-a-string": Corruption(
        "generated", '"text"', "generated: Input should be a valid list"
    ),
    "unknown-role": Corruption(
        "input",
        '[{"role": "wizard", "content": "x"}]',
        "messages.0.role: Input should be",
        database_tells=False,
    ),
    "unknown-kind": Corruption("kind", "bogus", "its kind is neither 'chat' nor 'completion'"),
    "newer-version": Corruption("record_version", 99, "written by a newer jib"),
    "timestamp-a-word": Corruption(
        "timestamp", "yesterday", "its timestamp column is not a time", sqlite_only=True
    ),
    "failed-a-word": Corruption(
        "failed", "maybe", "its failed column is not true or false", sqlite_only=True
    ),
    "tokens-text": Corruption(
        "input_tokens", "many", "its input_tokens column is not a whole number", sqlite_only=True
    ),
}


def skip_unless_applies(corruption: Corruption, store: ChatStore) -> None:
    if corruption.sqlite_only and store.backend != "sqlite":
        pytest.skip("PostgreSQL refuses this value itself")


def unreadable_warnings(caught: list[warnings.WarningMessage]) -> list[UnreadableRecordWarning]:
    return [w.message for w in caught if isinstance(w.message, UnreadableRecordWarning)]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_an_unreadable_row_is_skipped_and_named_and_the_rest_loads(
    store: ChatStore,
    store_url: str,
    planted: tuple[list[Chat], Chat],
    name: str,
    tmp_path: Path,
) -> None:
    corruption = CORRUPTIONS[name]
    skip_unless_applies(corruption, store)
    good, bad = planted
    corrupt(store_url, bad.id, corruption.column, corruption.value)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = store.query()
        dicts = list(store.iter_dicts(run="r"))
        last_two = store.query(newest_first=True, limit=3)
        last = store.last()
        exported = store.export_jsonl(tmp_path / "export.jsonl")

    assert [record.content for record in loaded] == ["FIRST", "SECOND", "LAST"]
    assert [record.to_dict() for record in loaded] == [record.to_dict() for record in good]
    assert [data["id"] for data in dicts] == [record.id for record in good]
    assert [record.id for record in last_two] == [good[2].id, good[1].id]  # the limit counts it
    assert last is not None and last.id == good[2].id
    assert exported == 3
    skipped = unreadable_warnings(caught)
    # One per reading call that reached it (`last()` reaches it when it sorts newest).
    assert len(skipped) >= 4 and {w.record_id for w in skipped} == {bad.id}
    message = str(skipped[0])
    assert message.startswith("stored ")
    assert f" {bad.id} cannot be read and was skipped: " in message
    assert corruption.reason in message and corruption.reason in skipped[0].reason

    with pytest.raises(UnreadableRecordError, match=re.escape(corruption.reason)) as raised:
        store.get(bad.id)
    assert raised.value.record_id == bad.id
    with pytest.raises(UnreadableRecordError):
        store.get_dict(bad.id[:8])

    [summary] = store.runs()
    assert summary["records"] == 4
    assert summary["unreadable"] == (1 if corruption.database_tells else 0)
    assert summary["failed"] == 0
    assert summary["last"] == good[2].timestamp


def test_unreadable_rows_are_left_for_resume_to_run_again(
    store: ChatStore, store_url: str, planted: tuple[list[Chat], Chat]
) -> None:
    good, bad = planted
    corrupt(store_url, bad.id, "meta", "[1]")

    assert [result.id for result in store.stored_results("r")] == [record.id for record in good]


def test_last_skips_newer_unreadable_records(store: ChatStore, store_url: str) -> None:
    older, newer = good_chat("older", "1"), good_chat("newer", "2")
    newer.timestamp = newer.timestamp.replace(year=newer.timestamp.year + 1)
    store.save([older, newer])
    corrupt(store_url, newer.id, "generated", '"not a list"')

    with pytest.warns(UnreadableRecordWarning, match=newer.id):
        last = store.last()

    assert last is not None and last.id == older.id


def test_control_a_store_of_good_records_loads_exactly_as_before(
    store: ChatStore, planted: tuple[list[Chat], Chat]
) -> None:
    good, bad = planted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        loaded = store.query()
        [summary] = store.runs()
    assert [record.to_dict() for record in loaded] == [
        record.to_dict() for record in [good[0], bad, *good[1:]]
    ]
    assert all(isinstance(record.generator, EchoGenerator) for record in loaded)
    assert summary["unreadable"] == 0 and summary["records"] == 4


def test_unreadable_params_are_dropped_not_the_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jib.db'}"
    with open_store(url) as store:
        record = good_chat("hi", "1")
        store.save(record)
        corrupt(url, record.id, "params", "{not json")

        with pytest.warns(GeneratorWarning, match="params column is not JSON") as caught:
            [loaded] = store.query()
    assert loaded.id == record.id and loaded.params is None
    assert not unreadable_warnings(caught.list)


# -- a spec that does not compile ---------------------------------------------------------------


def test_a_stored_spec_that_does_not_compile_loads_without_its_generator(
    store: ChatStore,
) -> None:
    good = good_chat("fine", "1")
    bad = Chat(messages=[Message("user", "planted")], _generator_id=UNCOMPILABLE)
    store.save([good, bad])

    with pytest.warns(GeneratorWarning, match="loaded without its generator") as caught:
        loaded = {record.id: record for record in store.query()}

    assert isinstance(loaded[good.id].generator, EchoGenerator)
    assert loaded[bad.id].generator is None and loaded[bad.id].generator_id == UNCOMPILABLE
    assert not unreadable_warnings(caught.list)


def test_loading_one_record_with_a_spec_that_does_not_compile_is_a_jib_error() -> None:
    record = Chat(messages=[Message("user", "planted")], _generator_id=UNCOMPILABLE)

    with pytest.raises(JibError) as raised:
        Chat.from_dict(record.to_dict())
    assert isinstance(raised.value, (InvalidGeneratorError, jib.ProcessingError))
    # The record itself is fine: loaded without rebuilding, it is all there.
    assert Chat.from_dict(record.to_dict(), rebuild_generator=False).content == "planted"


# -- batches of records: JSON arrays and JSON Lines ------------------------------------------------


def jsonl_batch(tmp_path: Path) -> tuple[Path, list[Chat]]:
    good = [good_chat("one", "1"), good_chat("two", "2")]
    completion = Completion(text="abc", generated="def")
    newer = {**good_chat("x", "3").to_dict(), "schema_version": 99}
    wrong_shape = {**good_chat("y", "4").to_dict(), "messages": "not a list"}
    lines = [
        good[0].to_json().encode(),
        b"{not json",
        b"",
        json.dumps(newer).encode(),
        b'{"prompt": "\xff\xfe"}',  # not UTF-8
        completion.to_json().encode(),
        json.dumps(wrong_shape).encode(),
        b"[" * 100_000,
        json.dumps(
            Chat(messages=[Message("user", "u")], _generator_id=UNCOMPILABLE).to_dict()
        ).encode(),
        good[1].to_json().encode(),
    ]
    path = tmp_path / "chats.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, good


def test_from_jsonl_skips_each_bad_line_with_a_warning_and_loads_the_rest(
    tmp_path: Path,
) -> None:
    path, good = jsonl_batch(tmp_path)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Chat.from_jsonl(path)

    assert [record.content for record in loaded] == ["ONE", "u", "TWO"]
    assert loaded[0].to_dict() == good[0].to_dict()
    assert loaded[1].generator is None  # the uncompilable spec: loaded without its generator
    skipped = [str(w) for w in unreadable_warnings(caught)]
    assert len(skipped) == 6
    assert skipped[0] == (
        "record (line 2) cannot be read and was skipped: it is not JSON (Expecting property "
        "name enclosed in double quotes)"
    )
    assert skipped[1].startswith("chat ") and skipped[1].endswith(
        " (line 4) cannot be read and was skipped: schema_version: Value error, this record has "
        "schema_version 99, written by a newer jib; this jib reads up to 2: upgrade jib to load it"
    )
    assert skipped[2] == (
        "record (line 5) cannot be read and was skipped: it is not JSON (not UTF-8)"
    )
    assert skipped[3].startswith("completion ") and skipped[3].endswith(
        " (line 6) cannot be read and was skipped: it is a completion, not a chat"
    )
    assert skipped[4].endswith(
        " (line 7) cannot be read and was skipped: messages: Input should be a valid list"
    )
    assert skipped[5] == (
        "record (line 8) cannot be read and was skipped: it is nested 100000 levels deep; at most "
        "100 levels of arrays and objects are read"
    )
    [rebuilt] = [str(w.message) for w in caught if type(w.message) is GeneratorWarning]
    assert "(line 9): loaded without its generator" in rebuilt


def test_from_jsonl_takes_text_lines_and_open_files(tmp_path: Path) -> None:
    path, good = jsonl_batch(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_bytes = Completion.from_jsonl(path.read_bytes())
        with open(path, "rb") as handle:
            from_handle = Completion.from_jsonl(handle)
        from_text = Chat.from_jsonl(good[0].to_json() + "\n" + good[1].to_json())

    assert [record.generated for record in from_bytes] == ["def"]
    assert [record.generated for record in from_handle] == ["def"]
    assert [record.id for record in from_text] == [record.id for record in good]


def test_from_dicts_loads_a_json_array_of_records(tmp_path: Path) -> None:
    good = [good_chat("one", "1"), good_chat("two", "2")]
    items: list[Any] = [good[0].to_dict(), "not an object", {"id": 5}, good[1].to_dict()]

    with pytest.warns(UnreadableRecordWarning) as caught:
        loaded = Chat.from_dicts(items)

    assert [record.id for record in loaded] == [record.id for record in good]
    assert [str(w.message) for w in caught] == [
        "record (item 2) cannot be read and was skipped: it is a JSON string, not an object",
        "chat (item 3) cannot be read and was skipped: id: Input should be a valid string; "
        "timestamp: Field required",
    ]


def test_a_batch_keeps_the_trust_rule_of_issue_12(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SECRET", "s3cr3t-value")
    planted = Chat(
        messages=[Message("user", "hi")],
        _generator_id="openai/gpt-4o,api_key=env:SOME_SECRET",
    )

    with pytest.warns(GeneratorWarning, match="--allow-env") as caught:
        [loaded] = Chat.from_dicts([planted.to_dict()])

    assert loaded.generator is None and loaded.content == "hi"
    assert not unreadable_warnings(caught.list)


def test_control_good_batches_load_without_warnings() -> None:
    good = [good_chat("one", "1"), good_chat("two", "2")]
    text_ = "\n".join(record.to_json() for record in good)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Chat.from_jsonl(text_)
        again = Chat.from_dicts([record.to_dict() for record in good])

    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in again]
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in good]
    assert all(isinstance(r.generator, EchoGenerator) for r in loaded)


# -- every CLI view ------------------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, list[Chat], Chat]:
    """A SQLite store with three good chats of run `r` and one row that is not JSON."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with open_store(url) as store:
        chats = [good_chat(w, str(i)) for i, w in enumerate(["first", "bad", "second", "last"])]
        for index, record in enumerate(chats):
            record.timestamp = record.timestamp.replace(year=2030 + index)
        bad = chats.pop(1)
        bad.timestamp = bad.timestamp.replace(year=2099)  # the newest
        store.save([*chats, bad], run="r")
        corrupt(url, bad.id, "meta", "{planted")
    return url, chats, bad


@pytest.fixture
def cli(tmp_path: Path) -> JibRunner:
    return make_runner(isolated_env(tmp_path), tmp_path)


def assert_noted(result: Result, bad: Chat) -> None:
    """The command worked and said, on stderr, that one record was skipped, and which."""
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert "note: 1 stored record cannot be read and was skipped:" in result.stderr
    assert f"  {bad.id}: its metadata column is not JSON" in result.stderr


def test_log_skips_and_counts_an_unreadable_record(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat]
) -> None:
    url, good, bad = cli_store

    table = cli("log", "--store", url)
    as_json = cli("log", "--store", url, "--json")

    assert_noted(table, bad)
    assert all(record.id[:12] in table.stdout for record in good)
    assert_noted(as_json, bad)
    assert [data["id"] for data in as_json.json()] == [record.id for record in reversed(good)]


def test_log_of_only_unreadable_records_says_so(cli: JibRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'only-bad.db'}"
    with open_store(url) as store:
        bad = good_chat("bad", "1")
        store.save(bad)
    corrupt(url, bad.id, "meta", "{planted")

    result = cli("log", "--store", url)

    assert_noted(result, bad)
    assert result.stdout.strip() == f"No stored chat that can be read matches in {url}."


def test_show_names_an_unreadable_record_and_shows_the_others(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat]
) -> None:
    url, good, bad = cli_store

    broken = cli("show", bad.id[:8], "--store", url)
    fine = cli("show", good[0].id[:8], "--store", url)

    assert broken.code == 1 and "Traceback" not in broken.stderr
    assert broken.last_error_line == (
        f"error: stored chat {bad.id} cannot be read: its metadata column is not JSON "
        "(Expecting property name enclosed in double quotes at character 1)"
    )
    assert fine.code == 0 and "FIRST" in fine.stdout


@pytest.mark.parametrize("format", ["jsonl", "csv", "parquet"])
def test_export_skips_and_counts_an_unreadable_record(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat], tmp_path: Path, format: str
) -> None:
    url, good, bad = cli_store
    target = tmp_path / f"out.{format}"

    result = cli("export", "--store", url, "--run", "r", "-o", str(target))

    assert_noted(result, bad)
    assert f"exported 3 records as {format} to {target} (1 unreadable record skipped)" in (
        result.stderr
    )
    if format == "jsonl":
        assert [c.id for c in Chat.from_jsonl(target)] == [c.id for c in good]


def test_compare_and_report_skip_and_count_an_unreadable_record(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat], tmp_path: Path
) -> None:
    url, good, bad = cli_store

    compared = cli("compare", "--store", url, "--run", "r")
    reported = cli("report", "--store", url, "--run", "r", "-o", str(tmp_path / "r.html"))

    assert_noted(compared, bad)
    assert "1 unreadable record skipped" in " ".join(compared.stdout.split())
    assert all(record.content in compared.stdout for record in good)
    assert_noted(reported, bad)
    assert "1 unreadable record skipped" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_runs_counts_unreadable_records(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat]
) -> None:
    url, _, _ = cli_store

    table = cli("runs", "--store", url)
    [summary] = cli("runs", "--store", url, "--json").json()

    assert table.code == 0, table.stderr
    header, row = [line.split() for line in table.stdout.splitlines() if line.strip()][:3:2]
    assert header[-1] == "unreadable" and row[-1] == "1"
    assert "jib log --run NAME` names them" in table.stderr
    assert summary["records"] == 4 and summary["unreadable"] == 1


def test_chat_continue_skips_an_unreadable_newest_record(
    cli: JibRunner, cli_store: tuple[str, list[Chat], Chat]
) -> None:
    url, good, bad = cli_store

    result = cli("chat", "--store", url, "--continue", "and then?")
    pointed = cli("chat", "--store", url, "--cid", bad.id, "and then?")

    assert_noted(result, bad)
    assert result.stdout.strip() == "and then?"
    with open_store(url) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [continued] = [c for c in store.query() if "continued_from" in c.metadata]
    assert continued.metadata["continued_from"] == good[-1].id
    assert [m.content for m in continued.messages] == ["last", "LAST", "and then?"]
    assert pointed.code == 1 and f"stored chat {bad.id} cannot be read" in pointed.stderr


def test_cli_views_on_postgresql_skip_and_count(
    cli: JibRunner, postgres_url: str, tmp_path: Path
) -> None:
    url = empty_postgres(postgres_url)
    with open_store(url) as store:
        good = [good_chat("one", "1"), good_chat("two", "2")]
        bad = good_chat("bad", "3")
        store.save([*good, bad], run="r")
        corrupt(url, bad.id, "meta", "[1]")

    logged = cli("log", "--store", url)
    [summary] = cli("runs", "--store", url, "--json").json()

    assert logged.code == 0, logged.stderr
    assert f"  {bad.id}: metadata: Input should be a valid dictionary" in logged.stderr
    assert summary["unreadable"] == 1
