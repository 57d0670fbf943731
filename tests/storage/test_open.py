"""Opening stores: the default location, URLs and paths, schema versions, and clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text, update

from jib import Chat, Message, Usage
from jib.storage import (
    SCHEMA_VERSION,
    StoreError,
    default_store_path,
    default_store_url,
    open_store,
    to_database_url,
)
from jib.storage._schema import schema_version
from tests.storage.postgres import empty_postgres


def test_default_path_follows_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JIB_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))

    assert default_store_path() == tmp_path / "jib" / "jib.db"
    assert default_store_url() == f"sqlite:///{tmp_path}/jib/jib.db"


def test_default_path_without_xdg_is_under_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert default_store_path() == tmp_path / ".local" / "share" / "jib" / "jib.db"


def test_jib_store_env_var_takes_a_path_or_a_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JIB_STORE", str(tmp_path / "mine.db"))
    assert default_store_url() == f"sqlite:///{tmp_path}/mine.db"

    monkeypatch.setenv("JIB_STORE", "postgresql://u@127.0.0.1/jib")
    assert default_store_url() == "postgresql+psycopg://u@127.0.0.1/jib"


def test_open_store_without_url_creates_the_default_file_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JIB_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    with open_store() as store:
        store.save(Chat())
        assert store.path == tmp_path / "data" / "jib" / "jib.db"
    assert (tmp_path / "data" / "jib" / "jib.db").is_file()


def test_relative_paths_become_absolute_sqlite_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert to_database_url("x.db") == f"sqlite:///{tmp_path}/x.db"
    assert to_database_url("sqlite:///abs.db") == "sqlite:///abs.db"


def test_reopening_keeps_what_was_stored(store_url: str) -> None:
    chat = Chat()
    with open_store(store_url) as store:
        store.save(chat)
    with open_store(store_url) as store:
        assert store.get(chat.id).id == chat.id
        assert store.schema_version == SCHEMA_VERSION


def test_a_store_newer_than_this_jib_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(to_database_url(store_url))
    with engine.begin() as connection:
        connection.execute(update(schema_version).values(version=SCHEMA_VERSION + 1))
    engine.dispose()

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        open_store(store_url)


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(StoreError, match="jib stores chats in SQLite or PostgreSQL"):
        open_store("mysql://u:pw@127.0.0.1/jib")


def test_malformed_url_is_refused() -> None:
    with pytest.raises(StoreError, match="is not a database URL"):
        open_store("::nonsense://")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_postgres_gives_one_line_without_the_password() -> None:
    url = f"postgresql://jib:hunter2-secret@127.0.0.1:{free_port()}/jib?connect_timeout=5"

    with pytest.raises(StoreError) as caught:
        open_store(url)

    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "cannot open the store postgresql+psycopg://jib:***@127.0.0.1" in message
    assert "\n" not in message


def test_sqlite_file_in_an_unwritable_place_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(StoreError, match="cannot create the folder"):
        open_store(blocker / "sub" / "jib.db")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite " * 100)

    with pytest.raises(StoreError, match="file is not a database"):
        open_store(bogus)


def test_store_url_and_repr_mask_the_password(postgres_url: str) -> None:
    # The test server trusts loopback connections, so any password is accepted.
    with_password = make_url(empty_postgres(postgres_url)).set(password="hunter2-secret")

    with open_store(with_password.render_as_string(hide_password=False)) as store:
        assert "hunter2-secret" not in repr(store)
        assert ":***@" in store.url


def test_sqlite_store_uses_wal_so_readers_do_not_block_the_writer(tmp_path: Path) -> None:
    with open_store(tmp_path / "w.db") as store:
        store.save(Chat())
        engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        engine.dispose()


def test_every_older_schema_version_has_a_migration() -> None:
    from jib.storage._schema import MIGRATIONS

    # Bumping SCHEMA_VERSION without a migration for existing databases fails here.
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def test_a_store_at_a_version_with_no_migration_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(to_database_url(store_url))
    with engine.begin() as connection:
        connection.execute(update(schema_version).values(version=0))
    engine.dispose()

    with pytest.raises(StoreError, match="schema version 0 and this jib has no migration from it"):
        open_store(store_url)


COLUMNS_ADDED = {
    2: ("prompt_id", "sample_index", "latency_ms", "cost_usd", "attempts"),
    3: ("output", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"),
}
"""The columns of `jib_records` each schema version added."""
INDEXES_ADDED = {2: ("ix_jib_records_run_prompt",)}
INDEXES_DROPPED = {4: ("ix_jib_records_run_input",)}
"""The indexes of `jib_records` each schema version added, and dropped (with their columns)."""
DROPPED_INDEX_COLUMNS = {"ix_jib_records_run_input": ("run", "input_key")}


def make_old_store(url: str, version: int) -> Chat:
    """A database as jib wrote it at schema `version` (its tables: records, tags, version),
    holding one chat; return that chat."""
    from sqlalchemy import Column, Index, MetaData, Table, insert

    from jib.storage._rows import record_to_row
    from jib.storage._schema import records, tags

    later = {name for v, names in COLUMNS_ADDED.items() if v > version for name in names}
    later_indexes = {name for v, names in INDEXES_ADDED.items() if v > version for name in names}
    old = MetaData()
    columns = [
        Column(
            c.name,
            c.type,
            nullable=c.nullable,
            primary_key=c.primary_key,
            unique=c.unique,
            autoincrement=c.autoincrement,
        )
        for c in records.columns
        if c.name not in later
    ]
    old_records = Table(records.name, old, *columns)
    for index in records.indexes:
        if index.name not in later_indexes:
            Index(index.name, *(old_records.c[c.name] for c in index.columns))
    for v, names in INDEXES_DROPPED.items():
        for name in names if v > version else ():
            Index(name, *(old_records.c[c] for c in DROPPED_INDEX_COLUMNS[name]))
    tags.to_metadata(old)
    schema_version.to_metadata(old)
    chat = Chat(messages=[Message("user", f"from version {version}")], metadata={"prompt_id": "q1"})
    row, _, _ = record_to_row(chat, run="old", extra_tags=[], stored_at=chat.timestamp)
    engine = create_engine(to_database_url(url))
    with engine.begin() as connection:
        old.create_all(connection)
        connection.execute(insert(schema_version).values(version=version))
        connection.execute(insert(old_records), {k: v for k, v in row.items() if k not in later})
    engine.dispose()
    return chat


def test_a_version_1_store_is_migrated_and_keeps_its_records(store_url: str) -> None:
    chat = make_old_store(store_url, 1)

    with open_store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        [old] = list(store.iter_dicts(run="old"))
        store.save(Chat(latency_ms=5.0, cost_usd=0.5, metadata={"prompt_id": "q2"}), run="new")
        [new] = list(store.iter_dicts(run="new"))

    assert old["id"] == chat.id and old["messages"][0]["content"] == "from version 1"
    assert (old["prompt_id"], old["latency_ms"], old["cost_usd"], old["attempts"]) == (
        None,
        None,
        None,
        None,
    )
    assert (new["prompt_id"], new["latency_ms"], new["cost_usd"]) == ("q2", 5.0, 0.5)
    engine = create_engine(to_database_url(store_url))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jib_schema_version")).scalar() == 1
    engine.dispose()


def test_a_version_2_store_is_migrated_then_keeps_parts_beside_its_old_records(
    store_url: str,
) -> None:
    from jib import ContentImageUrl

    chat = make_old_store(store_url, 2)
    image = ContentImageUrl.from_bytes(b"\x89PNG" + bytes(range(256)) * 8, "image/png")
    with_parts = Chat(messages=[Message("user", ["What is this?", image])], output={"a": 1})

    with open_store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        [old] = store.query(run="old")
        store.save(with_parts, run="new")
        [new] = store.query(run="new")

    assert old.id == chat.id and old.messages == chat.messages and old.output is None
    assert new.messages == with_parts.messages and new.output == {"a": 1}
    engine = create_engine(to_database_url(store_url))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jib_blobs")).scalar() == 1
    engine.dispose()


def test_a_store_written_by_the_previous_jib_opens_and_reads(tmp_path: Path) -> None:
    # store-v2.db was written by jib at schema version 2 (see data/make_store_v2.py).
    import shutil

    from jib import Completion, StoredError

    path = tmp_path / "jib.db"
    shutil.copyfile(Path(__file__).parent / "data" / "store-v2.db", path)

    with open_store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        chat, failed, completion = store.query(run="v2")
        runs = store.runs()

    assert isinstance(chat, Chat) and chat.id == "a" * 32
    assert [m.content for m in chat.all] == ["Be brief.", "Héllo", "Héllo"]
    assert chat.generator is not None and chat.params is not None
    assert chat.params.temperature == 0.5
    assert (chat.usage, chat.cost_usd, chat.metadata["prompt_id"]) == (Usage(3, 1), 0.25, "q1")
    assert chat.output is None
    assert failed.failed and isinstance(failed.error, StoredError)
    assert failed.error.message == "boom"
    assert isinstance(completion, Completion) and completion.all == "The sky is blue"
    assert runs[0]["records"] == 3 and runs[0]["unreadable"] == 0


def test_a_version_3_store_loses_its_run_input_index_and_keeps_its_records(
    store_url: str,
) -> None:
    from sqlalchemy import inspect

    chat = make_old_store(store_url, 3)
    engine = create_engine(to_database_url(store_url))

    def indexes() -> set[str]:
        with engine.connect() as connection:
            return {i["name"] or "" for i in inspect(connection).get_indexes("jib_records")}

    assert "ix_jib_records_run_input" in indexes()

    with open_store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        [old] = store.query(run="old")
        store.save(Chat(metadata={"prompt_id": "q2"}), run="old")
        assert [r.prompt_id for r in store.stored_results("old")] == ["q1", "q2"]

    assert old.id == chat.id
    assert "ix_jib_records_run_input" not in indexes()
    assert "ix_jib_records_run_prompt" in indexes()
    engine.dispose()
