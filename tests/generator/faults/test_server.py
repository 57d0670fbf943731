"""The fault-injection server does what the other fault tests rely on, seen by a plain client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support.fault_injection import (
    Always,
    At,
    Every,
    Fault,
    FirstAttempts,
    RunningFaultInjection,
    Seeded,
    answer_for,
    eventually,
)

BROKEN = (httpx.ReadError, httpx.RemoteProtocolError)
"""What a reset looks like to httpx: a failed read, or an answer cut short."""


async def post(client: httpx.AsyncClient, url: str, prompt: str) -> httpx.Response:
    return await client.post(url, json={"prompt": prompt})


async def test_good_answers_echo_their_own_prompt_in_both_protocols(
    faults: RunningFaultInjection,
) -> None:
    async with httpx.AsyncClient() as client:
        plain = await post(client, faults.plain_url, "one")
        chat = await client.post(
            f"{faults.openai_base}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "two"}]},
        )
        text = await client.post(f"{faults.openai_base}/completions", json={"prompt": "three"})

    assert plain.json() == {"answer": answer_for("one")}
    assert chat.json()["choices"][0]["message"]["content"] == answer_for("two")
    assert chat.json()["usage"]["prompt_tokens"] == 1
    assert text.json()["choices"][0]["text"] == answer_for("three")
    assert answer_for("one") != answer_for("two")
    assert faults.state.answered() == {"one": 1, "two": 1, "three": 1}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.reset(), BROKEN),
        (Fault.drop(), BROKEN),
        (Fault.truncated(), (httpx.RemoteProtocolError,)),
    ],
    ids=["reset", "drop", "truncated"],
)
async def test_broken_connections_fail_at_the_client(
    faults: RunningFaultInjection, fault: Fault, error: tuple[type[Exception], ...]
) -> None:
    faults.state.reset(FirstAttempts(1, fault))
    async with httpx.AsyncClient() as client:
        with pytest.raises(error):
            await post(client, faults.plain_url, "p")
        answer = await post(client, faults.plain_url, "p")  # the second attempt is answered

    assert answer.json() == {"answer": answer_for("p")}
    assert faults.state.faults() == {fault.label: 1}
    assert faults.state.attempts() == {"p": 2}


async def test_rate_limit_carries_its_headers(faults: RunningFaultInjection) -> None:
    faults.state.reset(At({1: Fault.rate_limit(retry_after=2, retry_after_ms=1500)}))
    async with httpx.AsyncClient() as client:
        response = await post(client, faults.plain_url, "p")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert "injected fault: HTTP 429" in response.json()["error"]["message"]


def test_every_counts_arrivals_and_the_first_rule_wins() -> None:
    schedule = Every([(5, Fault.error(503)), (13, Fault.rate_limit())])
    labels = [fault.label if (fault := schedule(n, 1)) else "" for n in range(1, 66)]

    assert labels.count("503") == 13 and labels.count("429") == 4  # 65 is a 503
    assert labels[4] == "503" and labels[12] == "429"


def test_seeded_schedule_is_repeatable_and_near_its_fraction() -> None:
    schedule = Seeded(seed=1, fraction=0.2, faults=[Fault.error(500), Fault.drop()])
    draws = [schedule(n, 1) for n in range(1, 5001)]

    assert draws == [schedule(n, 1) for n in range(1, 5001)]
    assert 900 < sum(draw is not None for draw in draws) < 1100
    assert {draw.label for draw in draws if draw} == {"500", "drop"}


async def test_held_requests_count_in_flight_and_end_when_the_client_leaves(
    faults: RunningFaultInjection,
) -> None:
    faults.state.reset(delay=30)
    async with httpx.AsyncClient() as client:
        calls = [asyncio.create_task(post(client, faults.plain_url, f"p{i}")) for i in range(8)]
        assert await eventually(lambda: faults.state.in_flight == 8, timeout=10)
        assert faults.state.open_connections == 8
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    assert await eventually(lambda: faults.state.open_connections == 0, timeout=30)
    assert faults.state.max_in_flight == 8
    assert {request.outcome for request in faults.state.requests()} == {"client closed"}


async def test_hold_until_lets_requests_go_together(faults: RunningFaultInjection) -> None:
    until = time.monotonic() + 0.5
    faults.state.reset(FirstAttempts(1, Fault.error(503, until=until)))
    async with httpx.AsyncClient() as client:
        early = asyncio.create_task(post(client, faults.plain_url, "a"))
        await asyncio.sleep(0.2)
        second = await post(client, faults.plain_url, "b")
        first = await early

    assert first.status_code == second.status_code == 503
    # Requests that arrived at different times were both held to the same instant (a busy
    # machine may let them go later, never sooner).
    requests = faults.state.requests()
    assert len(requests) == 2 and all((request.end or 0.0) >= until for request in requests)


async def test_together_holds_requests_until_the_last_of_them_arrives(
    faults: RunningFaultInjection,
) -> None:
    faults.state.reset(Always(Fault.error(503, together=3)))
    async with httpx.AsyncClient() as client:
        early = [asyncio.create_task(post(client, faults.plain_url, p)) for p in ("a", "b")]
        assert await eventually(lambda: faults.state.in_flight == 2, timeout=30)
        await asyncio.sleep(0.1)
        assert not any(call.done() for call in early)  # two of three: still held
        last = await post(client, faults.plain_url, "c")
        answers = [*await asyncio.gather(*early), last]

    assert [answer.status_code for answer in answers] == [503, 503, 503]
    requests = faults.state.requests()
    assert all((request.end or 0.0) >= requests[-1].start for request in requests)


async def test_reset_closes_kept_alive_connections(faults: RunningFaultInjection) -> None:
    async with httpx.AsyncClient() as client:
        await post(client, faults.plain_url, "p")
        assert faults.state.open_connections == 1  # kept alive for the next request
        faults.state.reset()
        assert await eventually(lambda: faults.state.open_connections == 0, timeout=30)
        assert (await post(client, faults.plain_url, "q")).status_code == 200

    assert faults.state.total_requests == 1
