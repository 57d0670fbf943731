"""Secrets never reach the database: not in identifiers, not in error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from jib import AuthenticationError, Chat, Message
from jib.storage import ChatStore
from jib.testing import EchoGenerator

SECRET = "sk-test-SECRET-0123456789abcdef"


def database_bytes(store: ChatStore) -> bytes:
    """Every byte of a SQLite store (file and WAL), or every row of a PostgreSQL one as text."""
    if store.path is not None:
        files = [store.path, Path(f"{store.path}-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    engine = create_engine(store._engine.url)
    with engine.connect() as connection:
        rows = [
            connection.execute(text(f"SELECT coalesce(string_agg(t::text, ''), '') FROM {n} t"))
            .scalar_one()
            .encode()
            for n in ("jib_records", "jib_tags")
        ]
    engine.dispose()
    return b"".join(rows)


async def test_api_key_never_stored(store: ChatStore) -> None:
    good = EchoGenerator(model="demo", api_key=SECRET)
    await good.chat().watch(store.watch(run="s")).run_batch(["hello"])
    # A provider that echoed the key back in its error message.
    echoed = AuthenticationError(f"bad key {SECRET}", status_code=401, provider="test")
    store.save(Chat(generator=good, messages=[Message("user", "x")], failed=True, error=echoed))

    raw = database_bytes(store)
    assert b"hello" in raw  # the check can see stored text at all
    assert SECRET.encode() not in raw
    failed = store.query(failed=True)[0]
    assert failed.error is not None
    assert str(failed.error) == "AuthenticationError: [test] HTTP 401: bad key ***"


def test_env_reference_is_kept_so_the_key_comes_from_the_environment(store: ChatStore) -> None:
    chat = Chat(
        generator=EchoGenerator(model="demo", api_key="env:MY_KEY"), messages=[Message("user", "x")]
    )
    store.save(chat)

    # Rebuilding it would need MY_KEY allowed (see tests/security/test_trust.py).
    loaded = store.get(chat.id, rebuild_generator=False)
    assert loaded.generator_id == "echo!demo,api_key=env:MY_KEY"


def test_a_key_taken_from_the_environment_is_masked_in_stored_errors(
    store: ChatStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIB_TEST_STORE_KEY", SECRET)
    generator = EchoGenerator(model="demo", api_key="env:JIB_TEST_STORE_KEY")
    echoed = AuthenticationError(f"bad key {SECRET}", status_code=401, provider="test")
    chat = Chat(generator=generator, messages=[Message("user", "x")], failed=True, error=echoed)
    store.save(chat)

    raw = database_bytes(store)
    assert b"bad key ***" in raw
    assert SECRET.encode() not in raw
