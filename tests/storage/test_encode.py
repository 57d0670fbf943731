"""Column values encoded for the driver read back as SQLAlchemy's encoding of them did."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from jib._unicode import escape_surrogates
from jib.storage._encode import UnencodableValue, column_encoders, encode_rows, json_text, text
from jib.storage._rows import _key, input_key
from jib.storage._schema import records

# Text with lone surrogates and everything else JSON escapes.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=20,
)


def old_json(value: Any) -> str:
    """How SQLAlchemy's JSON type wrote a value: `json.dumps` of it, lone surrogates escaped."""
    return json.dumps(escape_surrogates(value))


@given(JSON_VALUES)
def test_json_text_reads_back_as_json_dumps_did(value: Any) -> None:
    written = json_text(value)

    assert json.loads(written) == json.loads(old_json(value))
    written.encode("utf-8")  # no lone surrogate left to refuse


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.5, {"x": math.nan}]])
def test_a_float_that_is_not_finite_is_written_as_json_dumps_wrote_it(value: Any) -> None:
    assert json_text(value) == old_json(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"when": object()}, "Object of type object is not JSON serializable"),
        ({"raw": b"bytes"}, "Object of type bytes is not JSON serializable"),
        ({"when": datetime(2026, 1, 1)}, "Object of type datetime is not JSON serializable"),
    ],
)
def test_a_value_with_no_json_form_is_refused_with_json_dumps_message(
    value: Any, message: str
) -> None:
    with pytest.raises(UnencodableValue) as info:
        json_text(value)

    assert str(info.value) == message
    assert isinstance(info.value.__cause__, TypeError)


def test_text_escapes_lone_surrogates_only() -> None:
    assert text("plain") == "plain"
    assert text("é 👋") == "é 👋"
    assert text("bad \ud800") == "bad \\ud800"
    assert text(None) is None and text(7) == 7


def test_a_text_column_is_checked_at_once_and_escaped_where_needed() -> None:
    encoders = column_encoders([records.c.id, records.c.run], "sqlite")
    rows = [("a", None), ("b\udcff", "r"), ("", "é")]

    assert encode_rows(rows, encoders) == [("a", None), ("b\\udcff", "r"), ("", "é")]
    assert encode_rows([(1, "r")], encoders) == [(1, "r")]  # not text: left to the driver


TIMES = [
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    datetime(2026, 1, 2, 8, 4, 5, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime(1, 1, 1, tzinfo=timezone.utc),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
]


@pytest.mark.parametrize("moment", TIMES)
@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
def test_a_timestamp_is_encoded_as_sqlalchemy_encoded_it(moment: datetime, dialect: Any) -> None:
    column = records.c.timestamp
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    [(encoded,)] = encode_rows([(moment,)], column_encoders([column], dialect.name))

    assert encoded == processor(moment)


def test_every_column_that_sqlalchemy_processes_has_an_encoder() -> None:
    """A column type added later with a bind processor must be encoded here too."""
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        encoded = {index for index, _ in column_encoders(list(records.c), dialect.name)}
        for index, column in enumerate(records.c):
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            # PostgreSQL's flag processor only checks for a bool, which rows always hold.
            checks_only = dialect.name == "postgresql" and column.name == "failed"
            if processor is not None and not checks_only:
                assert index in encoded, (dialect.name, column.name)


MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": TEXT},
        optional={"tool_call_id": TEXT, "cache_control": st.just({"type": "ephemeral"})},
    ),
    max_size=4,
)


@given(MESSAGES)
def test_the_input_key_is_the_hash_it_always_was(messages: list[dict[str, Any]]) -> None:
    """`--resume` compares keys stored by older versions of jib with keys made now."""
    import hashlib

    old = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(old.encode("utf-8", "surrogatepass")).hexdigest()

    assert _key(messages) == expected
    assert input_key(messages) == expected
