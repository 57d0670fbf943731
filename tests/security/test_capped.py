"""The capped child the bounds tests run their cases in: it does cap memory and count CPU."""

from __future__ import annotations

from tests.security.capped import CAP_MEGABYTES, run_capped


def case_allocate(megabytes: int) -> int:
    """Hold `megabytes` of memory at once."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block) // (1024 * 1024)


def case_spin(rounds: int) -> int:
    """Spend CPU time."""
    total = 0
    for number in range(rounds):
        total += number % 7
    return total


def test_a_case_within_the_cap_runs() -> None:
    result = run_capped(case_allocate, CAP_MEGABYTES - 40)
    assert result.error_type is None, result.output
    assert result.value == CAP_MEGABYTES - 40


def test_a_case_beyond_the_cap_fails_for_lack_of_memory() -> None:
    result = run_capped(case_allocate, CAP_MEGABYTES + 20)
    assert result.error_type == "MemoryError", result.output
    assert not result.budget_exceeded


def test_the_cpu_time_of_the_case_is_reported() -> None:
    short = run_capped(case_spin, 1_000)
    long = run_capped(case_spin, 5_000_000)
    assert short.cpu_seconds < long.cpu_seconds
