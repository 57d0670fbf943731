"""`jib._json`: JSON from data is read with its nesting bounded, before parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jib._json import MAX_DEPTH, check_depth, loads, nesting_depth
from jib.errors import InvalidGeneratorError, ProcessingError


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]", "{"]', 1),  # brackets inside strings do not count
        ('["\\"[[[", "\\\\"]', 1),  # nor do escaped quotes end a string
        ("[[[" * 10, 30),  # unclosed brackets count as they open
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(json_values)
def test_nesting_depth_of_any_json_is_its_structure_depth(value: object) -> None:
    assert nesting_depth(json.dumps(value)) == _depth(value)
    assert nesting_depth(json.dumps(value, ensure_ascii=False)) == _depth(value)


def test_loads_refuses_nesting_deeper_than_the_limit_with_the_callers_error() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH, what="x") == json.loads(
        "[" * MAX_DEPTH + "]" * MAX_DEPTH
    )
    with pytest.raises(ProcessingError, match=r"^the body is nested 101 levels deep; at most 100"):
        loads("[" * (MAX_DEPTH + 1), what="the body")
    with pytest.raises(InvalidGeneratorError, match="nested 100000 levels deep"):
        check_depth("{" * 100_000, what="v", error=InvalidGeneratorError)
    with pytest.raises(json.JSONDecodeError):
        loads("[1,", what="x")
