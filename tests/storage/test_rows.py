"""A plain chat's row, made straight from the chat, is the row its dict makes, value for value."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jib
from jib import Chat, Message
from jib.messages import Usage
from jib.storage._rows import RowMaker, rows_to_save

# Text with lone surrogates and everything else JSON escapes.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
STORED_AT = datetime(2026, 12, 6, 7, 0, tzinfo=timezone.utc)
GENERATOR = jib.get_generator("openai!m,api_base=http://127.0.0.1:9/v1,temperature=0.5")
OTHER = jib.get_generator("echo!x")


@st.composite
def chats(draw: st.DrawFn) -> Chat:
    """Chats that are plain (text messages, no failure) or nearly so."""
    roles = st.sampled_from(["system", "user", "assistant"])
    messages = [Message(draw(roles), draw(TEXT)) for _ in range(draw(st.integers(0, 3)))]
    generated = [Message("assistant", draw(TEXT)) for _ in range(draw(st.integers(0, 2)))]
    metadata: dict[str, Any] = draw(
        st.dictionaries(
            st.sampled_from(["prompt_id", "sample_index", "tags", "run", "x"]),
            st.none() | st.booleans() | st.integers(-3, 3) | TEXT | st.lists(TEXT, max_size=2),
            max_size=4,
        )
    )
    usage = draw(
        st.none()
        | st.builds(Usage, st.integers(0, 9), st.integers(0, 9), st.just(0), st.integers(0, 2))
    )
    chat = Chat(
        generator=draw(st.sampled_from([GENERATOR, OTHER, None])),
        params=draw(st.sampled_from([GENERATOR.params, None])),
        messages=messages,
        generated=generated,
        metadata=metadata,
        usage=usage,
        stop_reason=draw(st.sampled_from(["stop", "length", "unknown"])),
        extra=draw(st.sampled_from([{}, {"model": "m", "é": "\udc80"}])),
        latency_ms=draw(st.none() | st.floats(0, 1e6) | st.integers(0, 9)),
        cost_usd=draw(st.none() | st.floats(0, 1)),
        attempts=draw(st.none() | st.integers(1, 3)),
    )
    if draw(st.booleans()):
        chat.id = draw(TEXT.filter(bool))
    if draw(st.integers(0, 9)) == 1:  # an error kept on a chat that did not fail
        chat.error = ValueError("boom")
    if draw(st.integers(0, 9)) == 0:  # not plain: made through its dict
        chat.generated = [Message("assistant", ["part", {"type": "text", "text": "two"}])]
    return chat


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@given(
    batch=st.lists(chats(), max_size=6), tags=st.sampled_from([(), ("t",)]), run=st.none() | TEXT
)
@settings(max_examples=150, deadline=None)
def test_a_plain_chats_row_is_the_row_its_dict_makes(
    backend: str, batch: list[Chat], tags: tuple[str, ...], run: str | None
) -> None:
    saved = rows_to_save(batch, run=run, tags=tags, stored_at=STORED_AT, backend=backend)

    maker = RowMaker(backend=backend, extra_tags=tags, stored_at=STORED_AT)
    made: dict[str, tuple[list[Any], list[str]]] = {}
    for chat in batch:
        named = chat.metadata.get("run")
        record_run = run if run is not None else named if isinstance(named, str) else None
        values, tag_list, _ = maker.values(chat, record_run)
        made[values[0]] = (values, tag_list)
    rows = maker.encode([values for values, _ in made.values()])
    assert [tuple(row) for row in saved.rows.values()] == [tuple(row) for row in rows]


def test_the_fast_row_is_taken_for_a_plain_chat_and_not_for_parts() -> None:
    maker = RowMaker(backend="sqlite", extra_tags=(), stored_at=STORED_AT)
    plain = Chat(generator=GENERATOR, messages=[Message("user", "hi")])
    parts = Chat(generator=GENERATOR, messages=[Message("user", ["hi"])])
    failed = Chat(generator=GENERATOR, messages=[Message("user", "hi")], failed=True)
    surrogate = Chat(generator=GENERATOR, messages=[Message("user", "\udc80")])
    errored = Chat(generator=GENERATOR, messages=[Message("user", "hi")], error=ValueError("x"))

    assert maker.encoded(plain, None) is not None
    not_plain = (parts, failed, surrogate, errored)
    assert [maker.encoded(chat, None) for chat in not_plain] == [None] * 4
