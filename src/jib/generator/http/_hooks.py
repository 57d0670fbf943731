"""The HTTP generator's hook: what it may return (`HookAction`) and how it is called.

Retries themselves (backoff, `Retry-After`) are the request tier's: see `jib._retry`.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from jib.errors import JibError, ProcessingError

if TYPE_CHECKING:
    import httpx

__all__ = ["HookAction", "HookResult", "run_hook"]


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
