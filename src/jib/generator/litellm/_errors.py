"""Turn LiteLLM's exceptions into jib's normalized provider errors.

LiteLLM raises its own classes (mostly subclasses of the `openai` SDK's), and not always the one
the HTTP status calls for: some 429s from self-hosted servers arrive as `APIConnectionError`
(whose `status_code` is always 500). So the HTTP status the server really sent wins when one can
be found on the exception or its causes; the LiteLLM class decides only when there is none.

LiteLLM's and the SDK's exceptions can quote the api key (a 401 echoing it back), so they are
not chained under jib's error: a redacted stand-in of each is (`jib._secrets.redacted_chain`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from jib._secrets import redact, redacted_chain
from jib.errors import (
    ContextLengthError,
    JibError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_for_status,
)

__all__ = ["litellm_failure", "map_litellm_error"]

MAX_MESSAGE_LENGTH = 1000
_STATUS_IN_TEXT = re.compile(
    r"(?:status(?:[ _]code)?|error code|http)[\s:=\"']*([1-5]\d\d)\b", re.I
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


_TIMEOUTS = {"Timeout", "APITimeoutError", "TimeoutException", "TimeoutError", "ServerTimeoutError"}
_CONNECTION_FAILURES = {"APIConnectionError", "TransportError", "ClientConnectionError", "OSError"}


def _transport_failure(exc: BaseException) -> str | None:
    """`"timeout"` or `"connection"` when no answer came back at all, else None."""
    for error in _chain(exc):
        names = _names(error)
        if names & _TIMEOUTS:
            return "timeout"
        if names & _CONNECTION_FAILURES:
            return "connection"
    return None


def _server_status(exc: BaseException) -> int | None:
    """The HTTP status the server really sent, looked for on `exc` and its causes.

    LiteLLM invents statuses (500 for `APIConnectionError` and for a refused connection, 408
    for a timeout), so a status on one of its exceptions counts only when no transport failure
    lies beneath it; responses of the SDK and transport below are taken as they are.
    """
    for error in _chain(exc):
        provider_status = getattr(error, "provider_status_code", None)
        if isinstance(provider_status, int):
            return provider_status
        response_status = getattr(getattr(error, "response", None), "status_code", None)
        if not type(error).__module__.startswith("litellm"):
            status = getattr(error, "status_code", response_status)
        elif "APIConnectionError" in _names(error) or _transport_failure(error) is not None:
            continue
        else:
            status = getattr(error, "status_code", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def _status_in_text(exc: BaseException) -> int | None:
    for error in _chain(exc):
        match = _STATUS_IN_TEXT.search(str(error))
        if match:
            return int(match.group(1))
    return None


def _message(exc: BaseException, secrets: list[str]) -> str:
    text = str(exc) or type(exc).__name__
    text = redact(text, secrets)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 3] + "..."
    return text


def litellm_failure(
    exc: BaseException, *, provider: str, secrets: Iterable[str | None]
) -> BaseException:
    """What to raise for an exception a LiteLLM call raised: jib's error, caused by a redacted
    stand-in of `exc` and its chain (or `exc` itself, when it already is a jib error).

    Raise it outside the `except` block that caught `exc`: inside, Python would chain `exc`
    itself as the error's `__context__`, key and all.
    """
    known = [secret for secret in secrets if secret]
    error = map_litellm_error(exc, provider=provider, secrets=known)
    if error is exc:
        return exc
    error.__cause__ = redacted_chain(exc, known)
    error.__suppress_context__ = True
    return error


def map_litellm_error(
    exc: BaseException, *, provider: str, secrets: Iterable[str | None]
) -> JibError:
    """The jib error for an exception a LiteLLM call raised; the caller chains `exc` as cause.

    Args:
        exc: what LiteLLM (or the SDK or transport under it) raised.
        provider: the model string, for the error's context.
        secrets: values to keep out of the message (the api key).

    Prefer `litellm_failure`, which also keeps the key out of the chained causes.
    """
    if isinstance(exc, JibError):
        return exc
    known = [s for s in secrets if s]
    message = _message(exc, known)
    if any("ContextWindowExceededError" in _names(error) for error in _chain(exc)):
        return ContextLengthError(
            message, status_code=_server_status(exc) or 400, provider=provider
        )
    status = _server_status(exc)
    if status is not None:
        return error_for_status(status, message, provider=provider)
    failure = _transport_failure(exc)
    if failure == "timeout":
        return ProviderTimeoutError(message, provider=provider)
    if failure == "connection":
        # LiteLLM reports some HTTP errors as connection errors; their text keeps the status.
        status = _status_in_text(exc)
        if status is not None:
            return error_for_status(status, message, provider=provider)
        return ProviderConnectionError(message, provider=provider)
    status = _status_in_text(exc)
    if status is not None:
        return error_for_status(status, message, provider=provider)
    return ProviderError(message, provider=provider)
