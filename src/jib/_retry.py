"""When a failed request is sent again, and after how long.

Nothing here sends or sleeps: `RetryPolicy.delay` is a small decision function that the request
tier (`jib.generator.RequestGenerator`) asks after each failed attempt.

The rules:
- only errors marked `retryable` are retried: connection failures, timeouts, cut or invalid
  bodies, 408/409/429/5xx; never 400/401/403/404/422;
- at most `max_retries` retries per request;
- the wait is exponential backoff with full jitter, `uniform(0, backoff * 2**(retry - 1))`, capped
  at `max_wait`, so a transient 503 recovers in tens of milliseconds;
- a provider's `Retry-After` / `retry-after-ms` is a floor: the retry waits at least that long;
  one longer than `max_wait` is not waited for (the request fails at once, saying why);
- a wait that would end past the request's deadline (its `timeout`) is not started either.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from jib.errors import ProviderError

__all__ = ["RetryPolicy", "parse_retry_after", "retry_after_from"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before sending a failed request again.

    Attributes:
        max_retries: retries per request (so at most `max_retries + 1` attempts).
        backoff: seconds; the base of the exponential backoff.
        max_wait: the longest single wait, `Retry-After` included.
    """

    max_retries: int
    backoff: float
    max_wait: float

    def delay(self, error: BaseException, retries_done: int) -> float | None:
        """Seconds to wait before retrying after `error`, or `None` to give up.

        Args:
            error: what the last attempt failed with.
            retries_done: how many retries this request has had already.
        """
        if not _retryable(error) or retries_done >= self.max_retries:
            return None
        backoff = random.uniform(0.0, min(self.max_wait, self.backoff * 2.0**retries_done))
        retry_after = error.retry_after if isinstance(error, ProviderError) else None
        if retry_after is None:
            return backoff
        if retry_after > self.max_wait:
            return None
        # The provider's wait is a floor; a little jitter on top keeps the retries of a burst of
        # 429s from arriving together again.
        return retry_after + backoff

    def refusal(self, error: BaseException, retries_done: int) -> str:
        """Why a retryable `error` was not retried, for the error message ("" when obvious)."""
        if not _retryable(error):
            return ""
        if self.max_retries == 0:
            return ""
        if retries_done >= self.max_retries:
            return f"gave up after {retries_done + 1} attempts, max_retries={self.max_retries}"
        retry_after = error.retry_after if isinstance(error, ProviderError) else None
        if retry_after is not None and retry_after > self.max_wait:
            return (
                f"Retry-After {retry_after:g}s exceeds max_retry_wait={self.max_wait:g}s, "
                "so it was not retried"
            )
        return ""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` value (seconds or an HTTP date), or `None`."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response's headers ask for: `retry-after-ms` first, then `Retry-After`.

    `headers` must look names up case-insensitively (httpx's and aiohttp's headers do).
    """
    if headers is None:
        return None
    if isinstance(headers, dict):
        headers = {str(name).lower(): value for name, value in headers.items()}
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        seconds = parse_retry_after(milliseconds)
        if seconds is not None:
            return seconds / 1000
    return parse_retry_after(headers.get("retry-after"))
