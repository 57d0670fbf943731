"""Messages and generation results."""

from __future__ import annotations

import pytest

from jib import Message, Usage
from jib.messages import as_messages, normalize_stop_reason


def test_messages_accept_strings_dicts_and_messages() -> None:
    messages = as_messages(["hi", {"role": "system", "content": "s"}, Message("assistant", "a")])
    assert messages == [Message("user", "hi"), Message("system", "s"), Message("assistant", "a")]
    assert as_messages("one") == [Message("user", "one")]
    assert str(messages[1]) == "[system]: s"


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ({"role": "user"}, ValueError, "'content' is missing"),
        ({"role": "robot", "content": "x"}, ValueError, "role must be one of"),
        (42, TypeError, "not int"),
        ({"role": "user", "content": 3}, TypeError, "content must be a string"),
    ],
)
def test_bad_messages_raise_clear_errors(value: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        Message.from_any(value)  # type: ignore[arg-type]


def test_usage_totals_and_adds() -> None:
    assert Usage(2, 3).total_tokens == 5
    assert (Usage(1, 1) + Usage(2, 2)).to_dict() == {
        "input_tokens": 3,
        "output_tokens": 3,
        "total_tokens": 6,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", "stop"),
        ("LENGTH", "length"),
        ("max_tokens", "length"),
        ("end_turn", "stop"),
        ("tool_use", "tool_calls"),
        (None, "unknown"),
        ("weird", "unknown"),
    ],
)
def test_stop_reasons_are_normalized(raw: str | None, expected: str) -> None:
    assert normalize_stop_reason(raw) == expected
