"""When the HTTP generator sends a request again: backoff, `Retry-After` and hook decisions.

Nothing here sends anything; `generator.py` asks this policy what to do after each attempt.
"""

from __future__ import annotations

import email.utils
import enum
import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from jib.errors import JibError, ProcessingError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "TRANSIENT_STATUS",
    "HookAction",
    "HookResult",
    "RetryPolicy",
    "parse_retry_after",
    "run_hook",
]


class HookAction(str, enum.Enum):
    """What a hook asks for after a response (the seed's name for a hook's return type).

    A hook may return a member or its plain string (`"retry"`), which compare equal; `None`
    means the same as `CONTINUE`.

    >>> HookAction.RETRY == "retry"
    True
    """

    RETRY = "retry"
    """Send the request again (rendered anew, so a refreshed `state` applies)."""
    CONTINUE = "continue"
    """Go on as usual: a valid response is the answer, another one is retried or fails."""
    RAISE = "raise"
    """Fail with this response's status error."""

    def __str__(self) -> str:
        return self.value


HookResult = HookAction | Literal["retry", "continue", "raise"] | None
"""What a hook returns: a `HookAction`, its plain string, or `None` (go on as usual)."""

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
"""Statuses worth retrying: the server is busy or a gateway failed, not the request."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending a request again.

    Attributes:
        max_retries: retries per request, for transient failures and hook retries together.
        backoff: seconds of the first delay; it doubles per retry, with jitter.
        max_wait: the longest single wait; a `Retry-After` beyond it is not waited for.
    """

    max_retries: int
    backoff: float
    max_wait: float

    def can_retry(self, attempt: int) -> bool:
        """Whether a request already retried `attempt` times may be retried once more."""
        return attempt < self.max_retries

    def backoff_delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based): exponential, capped, jittered."""
        delay = min(self.max_wait, self.backoff * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    def status_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds before retrying a transient `response` as retry `attempt`, or `None` when
        the response is not transient or its `Retry-After` is longer than `max_wait`."""
        if response.status_code not in TRANSIENT_STATUS:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.backoff_delay(attempt)
        return retry_after if retry_after <= self.max_wait else None

    def refusal_note(self, response: httpx.Response) -> str:
        """Why a transient `response` was not retried when its `Retry-After` was too long."""
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.status_code not in TRANSIENT_STATUS or retry_after is None:
            return ""
        if retry_after <= self.max_wait:
            return ""
        return f" (Retry-After {retry_after:g}s exceeds max_retry_wait={self.max_wait:g}s)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date), or `None`."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def run_hook(
    hook: Callable[..., Any] | None,
    generator: Any,
    response: httpx.Response,
    redact: Callable[[str], str],
) -> HookResult:
    """Call `hook(generator, response)` (async or plain) and check what it returned.

    Raises:
        ProcessingError: the hook raised (its message redacted by `redact`) or returned
            something other than "retry", "continue", "raise" or `None`.
    """
    if hook is None:
        return None
    try:
        decision = hook(generator, response)
        if inspect.isawaitable(decision):
            decision = await decision
    except JibError:
        raise
    except Exception as exc:
        raise ProcessingError(redact(f"the hook raised {type(exc).__name__}: {exc}")) from exc
    if decision is None or decision == "retry" or decision == "continue" or decision == "raise":
        checked: HookResult = decision
        return checked
    raise ProcessingError(
        redact(f"the hook returned {decision!r}; expected 'retry', 'continue', 'raise' or None")
    )
