"""Regex steps from data keep to their memory as well as their time.

Issue 16 §12: regex steps stopped at their time budget but not their memory, 549-567 MB for
captures on a 10 MB answer: the `regex` package keeps a backtracking point per repetition of a
group and every capture of a group inside a repeat (`captures()`). Such patterns are now charged
`STATE_ITEMS` per character of text for each unit of `state_units` before they match, and what
a step writes is charged too.

Each reproducer runs in a child process capped at 200 MB above a warmed-up jib, against a server
on 127.0.0.1 that records what it receives and serves the body: it ends with
`BudgetExceededError` within 2 s of CPU after one request; its control (the same pattern on a
small answer, or a pattern that keeps no state on the large one) reads the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jib.errors import BudgetExceededError, ProcessingError
from jib.generator.http import HTTPGenerator, HTTPSpec, RenderLimits
from jib.generator.http._regex import STATE_ITEMS, state_units
from tests.security.capped import CPU_SECONDS, run_capped
from tests.security.hostile_server import RunningHostile, run_hostile

LARGE = "a" * 9_900_000 + "b"
SMALL = "a" * 50_000 + "b"
STATE = "its repeated groups keep state for each of the text's"


@pytest.fixture(scope="module")
def hostile() -> Iterator[RunningHostile]:
    """A server on 127.0.0.1 that records what it receives and serves the bodies below."""
    with run_hostile() as running:
        running.serve_body("large", LARGE)
        running.serve_body("small", SMALL)
        running.serve_body("large-json", json.dumps([{"a": LARGE[:5_000_000]}]))
        yield running


@pytest.fixture(autouse=True)
def _forget_requests(hostile: RunningHostile) -> None:
    hostile.requests.clear()


def spec_for(url: str, kind: str, pattern: str) -> dict[str, Any]:
    return {
        "request": {"url": url, "method": "GET"},
        "response": {"transforms": [{"type": kind, "pattern": pattern}]},
    }


async def case_chat(spec: dict[str, Any], seconds: float = 1.0) -> str:
    """Chat once with an `http!` generator built from `spec`, `seconds` its time budget."""
    generator = HTTPGenerator(model="m", spec=spec)
    generator.render_limits = RenderLimits(seconds=seconds)
    chat = await generator.chat("hi").run(on_failed="include")
    if chat.error is not None:
        raise chat.error
    return chat.content


@pytest.mark.parametrize(
    ("kind", "pattern", "body"),
    [
        ("regex", "(a)*b", "large"),
        ("regex", "(.)*b", "large"),
        ("regex", "(?:a|aa)*b", "large"),
        ("regex", "((?:a|b)*)c", "large"),
        ("regex", "(?:()()()()a)*b", "large"),
        ("jsonpath", "$[?(@.a =~ '(a)*b')].a", "large-json"),
        ("jsonpath", "$[0].a.`sub(/(a)*/, x)`", "large-json"),
    ],
)
def test_a_regex_that_keeps_state_per_character_ends_in_a_budget_error(
    hostile: RunningHostile, kind: str, pattern: str, body: str
) -> None:
    result = run_capped(case_chat, spec_for(f"{hostile.origin}/body/{body}", kind, pattern))

    assert result.budget_exceeded, result.output
    assert STATE in result.message
    assert result.message.endswith("the limit is 10,000,000 (RenderLimits.max_size)")
    assert result.cpu_seconds < CPU_SECONDS, result
    assert [request["path"] for request in hostile.requests] == [f"/body/{body}"]


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ("(a)*b", "small", "a"),
        ("(?:a|aa)*(b)", "small", "b"),
        ("a(b)", "large", "b"),
        ("(a*)b", "small", "a" * 50_000),
        ("[^b]*(b)", "large", "b"),
    ],
)
def test_regexes_within_the_budget_still_read_the_answer(
    hostile: RunningHostile, pattern: str, body: str, expected: str
) -> None:
    # Time is not what these show (a loaded machine may take more than a second to scan 10 MB):
    # the budget's size and the memory cap are.
    spec = spec_for(f"{hostile.origin}/body/{body}", "regex", pattern)
    result = run_capped(case_chat, spec, 30)

    assert result.error_type is None, result.output
    assert result.value == expected
    assert len(hostile.requests) == 1


@pytest.mark.parametrize(
    ("pattern", "units"),
    [
        ("a*b", 0),
        (r"[^\"]*\d+", 0),
        ("(a*)b", 0),
        ("(?:ab)?c", 0),
        ("(?:ab)*", 1),
        ("(?:a|aa)*$", 1),
        ("(a)*", 2),
        ("(a)(?:(b)|c)+", 2),
        ("((a)*)*", 3),
        ("(?P<n>a)+", 2),
        ("(?:ab){2,5}", 1),
        ("(?:ab){1}", 0),
        (r"\(a\)*", 0),
        ("[(]*", 0),
    ],
)
def test_the_state_a_pattern_keeps_is_read_from_its_repeats(pattern: str, units: int) -> None:
    assert state_units(pattern) == units


def test_the_charge_is_per_character_and_unit_of_state() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "regex", "(a)*(b)"))
    text = "a" * 999 + "b"
    charge = len(text) * STATE_ITEMS * 2
    # The charge, then what the step writes (the first group: one character).
    assert spec.parse_response_body(text, limits=RenderLimits(max_size=charge + 1)) == "a"
    with pytest.raises(BudgetExceededError, match=STATE):
        spec.parse_response_body(text, limits=RenderLimits(max_size=charge - 1))


def test_a_regex_that_matches_nothing_does_not_quote_the_response() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "regex", "answer: (\\w+)"))
    with pytest.raises(ProcessingError) as caught:
        spec.parse_response_body("the key is sk-SECRET-0123456789")
    assert str(caught.value) == (
        "regex 'answer: (\\w+)' matched nothing in the response (31 characters)"
    )
