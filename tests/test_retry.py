"""The retry decision: what is retried, how long a retry waits, and `Retry-After`."""

from __future__ import annotations

import httpx
import pytest

from jib._retry import RetryPolicy, parse_retry_after, retry_after_from
from jib.errors import (
    ProcessingError,
    ProviderConnectionError,
    ProviderTimeoutError,
    error_for_status,
)


def test_retry_after_accepts_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("inf") is None
    assert parse_retry_after(None) is None


def test_retry_after_ms_wins_over_retry_after_and_names_are_case_insensitive() -> None:
    assert retry_after_from(httpx.Headers({"Retry-After": "2", "retry-after-ms": "250"})) == 0.25
    assert retry_after_from({"Retry-After": "2"}) == 2.0
    assert retry_after_from({"RETRY-AFTER-MS": "1500"}) == 1.5
    assert retry_after_from({}) is None
    assert retry_after_from(None) is None


def test_backoff_is_full_jitter_doubling_from_a_small_base_and_capped() -> None:
    policy = RetryPolicy(max_retries=10, backoff=0.05, max_wait=0.3)
    error = error_for_status(503, "busy")
    for retries_done, ceiling in ((0, 0.05), (1, 0.1), (2, 0.2), (3, 0.3), (6, 0.3)):
        delays = [policy.delay(error, retries_done) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays), (retries_done, delays)
        # Full jitter: waits spread over the whole range, not only its top half.
        assert min(d for d in delays if d is not None) < ceiling / 4


def test_gives_up_after_max_retries_and_says_so() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.0, max_wait=1.0)
    error = error_for_status(500, "boom")
    assert policy.delay(error, 1) is not None
    assert policy.delay(error, 2) is None
    assert policy.refusal(error, 2) == "gave up after 3 attempts, max_retries=2"
    assert RetryPolicy(0, 0.0, 1.0).refusal(error, 0) == ""


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    error = error_for_status(status, "try later")
    assert error.retryable
    assert RetryPolicy(3, 0.0, 1.0).delay(error, 0) == 0.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_statuses_that_need_a_fix_are_never_retried(status: int) -> None:
    error = error_for_status(status, "fix it")
    assert not error.retryable
    assert RetryPolicy(3, 0.0, 1.0).delay(error, 0) is None


def test_connection_failures_and_timeouts_are_retried_other_errors_not() -> None:
    policy = RetryPolicy(3, 0.0, 1.0)
    assert policy.delay(ProviderConnectionError("reset"), 0) == 0.0
    assert policy.delay(ProviderTimeoutError("slow"), 0) == 0.0
    assert policy.delay(ProviderConnectionError("no such scheme", retryable=False), 0) is None
    assert policy.delay(ProcessingError("bad spec"), 0) is None
    assert policy.delay(ValueError("a bug"), 0) is None


def test_retry_after_is_a_floor_and_one_beyond_max_wait_is_not_waited_for() -> None:
    policy = RetryPolicy(max_retries=3, backoff=0.05, max_wait=10.0)
    limited = error_for_status(429, "slow down", retry_after=2.0)
    delays = [policy.delay(limited, 0) for _ in range(50)]
    assert all(d is not None and 2.0 <= d <= 2.05 for d in delays)
    too_long = error_for_status(503, "maintenance", retry_after=3600)
    assert policy.delay(too_long, 0) is None
    assert policy.refusal(too_long, 0) == (
        "Retry-After 3600s exceeds max_retry_wait=10s, so it was not retried"
    )
