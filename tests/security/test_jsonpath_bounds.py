"""JSONPath from data runs within the render budget, off the event loop.

Issue 16 §4: `$..a..a..a` on a 2 KB nested answer ran 12.7 s and produced a 75,000,000-character
answer; `$..*` on a 7.8 MB body took 11.6 s and 459 MB, on the event loop. JSONPath now counts a
step per value it visits and `SELECTED_STEPS` per value it selects, charges what it writes, walks
`..` one value at a time, and parses responses in a worker thread.

Each reproducer runs in a child process capped at 200 MB above a warmed-up jib, against a server
on 127.0.0.1 that records what it receives and serves the hostile body: it ends with
`BudgetExceededError` within 2 s of CPU, after exactly one request; the control reads a normal
answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from jib.errors import BudgetExceededError
from jib.generator.http import HTTPGenerator, HTTPSpec, RenderLimits
from jib.generator.http._budget import HELD_VALUE_STEPS
from jib.generator.http._jsonpath import SELECTED_STEPS
from tests.security.capped import CPU_SECONDS, run_capped
from tests.security.hostile_server import RunningHostile, run_hostile

STEPS_LIMIT = "more than 1,000,000 loop iterations and calls (RenderLimits.max_steps)"
TIME_BUDGET = "took longer than its time budget of 1s"
SIZE_LIMIT = "(RenderLimits.max_size)"


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value, "pad": "0123456789"}
    return value


def wide_records(count: int) -> list[dict[str, Any]]:
    return [{"k": index, "v": [1, 2, 3], "s": "abc"} for index in range(count)]


# name -> (body, JSONPath)
REPRODUCERS: dict[str, tuple[Any, str]] = {
    "descendants-of-descendants": (nested(99), "$..a..a..a"),
    "every-value-of-a-large-body": (wide_records(190_000), "$..*"),
    "a-wide-array": ([0] * 2_500_000, "$[*]"),
    "a-wide-array-twice": ([[0] * 1_200] * 1_200, "$[*][*]"),
    "a-long-split": ({"a": "," * 5_000_000}, "$.a.`split(,, *, -1)`"),
    "a-wide-filter": ([{"a": 1}] * 1_000_000, "$[?(@.a == 1)]"),
    "sorted": ([[index % 7] for index in range(600_000)], "$.`sorted`"),
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[RunningHostile]:
    """A server on 127.0.0.1 that records what it receives and serves the bodies below."""
    with run_hostile() as running:
        for name, (body, _) in REPRODUCERS.items():
            running.serve_body(name, json.dumps(body))
        running.serve_body(
            "answer", json.dumps({"choices": [{"message": {"content": "hello"}}], "pad": [1] * 50})
        )
        yield running


@pytest.fixture(autouse=True)
def _forget_requests(hostile: RunningHostile) -> None:
    hostile.requests.clear()


def spec_for(url: str, path: str) -> dict[str, Any]:
    return {
        "request": {"url": url, "method": "GET"},
        "response": {"transforms": [{"type": "jsonpath", "pattern": path}]},
    }


async def case_chat(spec: dict[str, Any]) -> str:
    """Chat once with an `http!` generator built from `spec`."""
    generator = HTTPGenerator(model="m", spec=spec)
    chat = await generator.chat("hi").run(on_failed="include")
    if chat.error is not None:
        raise chat.error
    return chat.content


def case_parse(url: str, path: str) -> str:
    """Fetch `url` and read its body with a `jsonpath` step (the spec alone, no generator)."""
    from urllib.request import urlopen

    with urlopen(url) as response:
        body = response.read().decode()
    spec = HTTPSpec.model_validate(spec_for(url, path))
    return spec.parse_response_body(body)


@pytest.mark.parametrize("name", sorted(REPRODUCERS))
def test_a_jsonpath_reproducer_ends_in_a_budget_error(hostile: RunningHostile, name: str) -> None:
    path = REPRODUCERS[name][1]
    result = run_capped(case_chat, spec_for(f"{hostile.origin}/body/{name}", path))

    assert result.budget_exceeded, result.output
    assert result.message.startswith(f"jsonpath '{path}': ")
    assert any(limit in result.message for limit in (STEPS_LIMIT, TIME_BUDGET, SIZE_LIMIT))
    assert result.cpu_seconds < CPU_SECONDS, result
    assert [request["path"] for request in hostile.requests] == [f"/body/{name}"]


@pytest.mark.parametrize("name", sorted(REPRODUCERS))
def test_a_jsonpath_reproducer_read_by_the_spec_ends_in_a_budget_error(
    hostile: RunningHostile, name: str
) -> None:
    path = REPRODUCERS[name][1]
    result = run_capped(case_parse, f"{hostile.origin}/body/{name}", path)

    assert result.budget_exceeded, result.output
    assert result.message.startswith(f"jsonpath '{path}': ")
    assert result.cpu_seconds < CPU_SECONDS, result


def test_a_body_of_a_million_objects_is_refused_before_it_is_parsed() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "$[0]"))
    with pytest.raises(BudgetExceededError) as caught:
        spec.parse_response_body(json.dumps([{"a": 1}] * 300_000))
    assert str(caught.value) == (
        "jsonpath '$[0]': reading the response read by jsonpath '$[0]' (300,001 arrays and "
        "objects): more than 1,000,000 loop iterations and calls (RenderLimits.max_steps)"
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.choices[0].message.content", "hello"),
        ("$..content", "hello"),
        ("$.pad[*]", json.dumps([1] * 50)),
        ("$..*", None),
    ],
)
def test_ordinary_jsonpaths_still_read_the_answer(
    hostile: RunningHostile, path: str, expected: str | None
) -> None:
    result = run_capped(case_chat, spec_for(f"{hostile.origin}/body/answer", path))

    assert result.error_type is None, result.output
    if expected is not None:
        assert result.value == expected
    assert len(hostile.requests) == 1


def fewest_steps(spec: HTTPSpec, body: str) -> int:
    """The smallest `max_steps` with which `spec` reads `body`.

    The time budget is raised out of the way: on a loaded machine a second can pass, and that
    refusal is not the one being searched for.
    """
    low, high = 1, 10**7
    while low < high:
        middle = (low + high) // 2
        try:
            spec.parse_response_body(body, limits=RenderLimits(max_steps=middle, seconds=3600))
        except BudgetExceededError:
            low = middle + 1
        else:
            high = middle
    return low


def test_each_value_looked_at_and_selected_counts_towards_the_steps() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "$[*]"))
    thousand = fewest_steps(spec, json.dumps(list(range(1000))))
    two_thousand = fewest_steps(spec, json.dumps(list(range(2000))))
    # A thousand more values: each looked at (one step) and selected (SELECTED_STEPS).
    assert two_thousand - thousand == 1000 * (1 + SELECTED_STEPS)
    with pytest.raises(BudgetExceededError, match=f"more than {thousand - 1:,} loop iterations"):
        spec.parse_response_body(
            json.dumps(list(range(1000))), limits=RenderLimits(max_steps=thousand - 1, seconds=3600)
        )


def test_each_array_and_object_of_a_parsed_body_counts_towards_the_steps() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "$[0]"))
    flat = fewest_steps(spec, json.dumps([0] * 1000))
    nested = fewest_steps(spec, json.dumps([[0]] * 1000))
    assert nested - flat == 1000 * HELD_VALUE_STEPS


def test_what_a_jsonpath_writes_is_charged() -> None:
    spec = HTTPSpec.model_validate(spec_for("http://127.0.0.1:9/", "$..a"))
    body = json.dumps(nested(60))
    with pytest.raises(BudgetExceededError) as caught:
        spec.parse_response_body(body, limits=RenderLimits(max_size=20_000))
    assert "a jsonpath step writing its match would build" in str(caught.value)
    assert spec.parse_response_body(body, limits=RenderLimits(max_size=200_000))


def test_jsonpath_responses_are_parsed_off_the_event_loop(hostile: RunningHostile) -> None:
    # A JSONPath that works for seconds (limits raised in code; it selects nothing, so it holds
    # no memory), and a quick chat started by the slow one's hook, which runs on the event loop
    # just before the response is parsed: had the parse held the loop, the quick chat could not
    # finish first. Order only, no clock.
    hostile.serve_body("many-ones", json.dumps([1] * 2_000_000))
    about_to_parse = asyncio.Event()

    async def hook(generator: HTTPGenerator, response: Any) -> None:
        about_to_parse.set()

    slow = HTTPGenerator(
        model="m", spec=spec_for(f"{hostile.origin}/body/many-ones", "$[?(@ == 2)]"), hook=hook
    )
    slow.render_limits = RenderLimits(seconds=60, max_steps=10**12)
    quick = HTTPGenerator(model="m", spec=spec_for(f"{hostile.origin}/body/answer", "$..content"))
    finished: list[str] = []

    async def slow_chat() -> None:
        chat = await slow.chat("hi").with_(timeout=120).run(on_failed="include")
        finished.append(f"slow: {type(chat.error).__name__}")

    async def quick_chat() -> None:
        await about_to_parse.wait()
        chat = await quick.chat("hi").run(on_failed="include")
        finished.append(f"quick: {chat.content}")

    async def both() -> None:
        await asyncio.gather(slow_chat(), quick_chat())

    asyncio.run(both())
    assert finished == ["quick: hello", "slow: ProcessingError"]
