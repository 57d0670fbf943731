"""How the command line writes numbers and identifiers: percentiles, latencies, costs, wrapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jib.cli._figures import format_cost, format_ms, percentile, wrap_identifier


def test_percentiles_interpolate_between_values() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(v) for v in range(101)], 95) == 95.0


@pytest.mark.parametrize(
    ("milliseconds", "shown"),
    [(None, "–"), (0, "0ms"), (0.123, "0.12ms"), (3.14, "3.1ms"), (340.4, "340ms"), (1234, "1.2s")],
)
def test_latencies_read_at_a_glance(milliseconds: float | None, shown: str) -> None:
    assert format_ms(milliseconds) == shown


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (None, "–"),
        (0, "$0"),
        (0.00045, "$0.000450"),
        (0.0123, "$0.0123"),
        (1.234, "$1.23"),
        (1234.5, "$1,234"),
        (0.0000001, "<$0.000001"),
    ],
)
def test_costs_keep_three_significant_digits(usd: float | None, shown: str) -> None:
    assert format_cost(usd) == shown


def test_a_long_identifier_breaks_after_its_commas() -> None:
    wrapped = wrap_identifier("openai/gpt-4o-mini,api_base=http://localhost:8000/v1,seed=1", 36)

    assert wrapped.splitlines() == [
        "openai/gpt-4o-mini,",
        "api_base=http://localhost:8000/v1,",
        "seed=1",
    ]


@given(
    parts=st.lists(st.text(st.characters(blacklist_characters=",\n"), max_size=30), min_size=1),
    width=st.integers(min_value=1, max_value=60),
)
def test_wrapping_keeps_every_character_and_cuts_only_after_commas(
    parts: list[str], width: int
) -> None:
    identifier = ",".join(parts)

    lines = wrap_identifier(identifier, width).split("\n")

    assert "".join(lines) == identifier
    for line in lines[:-1]:
        assert line.endswith(",")
    for line in lines:
        assert len(line) <= width or "," not in line.rstrip(",")
