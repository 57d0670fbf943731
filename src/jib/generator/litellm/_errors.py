"""Turn LiteLLM's exceptions into jib's normalized provider errors.

LiteLLM raises its own classes (mostly subclasses of the `openai` SDK's), and not always the one
the HTTP status calls for: some 429s from self-hosted servers arrive as `APIConnectionError`
(whose `status_code` is always 500). So the HTTP status the server really sent wins when one can
be found on the exception or its causes; the LiteLLM class decides only when there is none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from jib._syntax import REDACTED
from jib.errors import (
    ContextLengthError,
    JibError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_for_status,
)

__all__ = ["map_litellm_error", "redact"]

MAX_MESSAGE_LENGTH = 1000
_STATUS_IN_TEXT = re.compile(
    r"(?:status(?:[ _]code)?|error code|http)[\s:=\"']*([1-5]\d\d)\b", re.I
)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)
# A secret echoed back partly masked ("sk-abc1****wxyz") is still a secret's fragment: drop any
# word holding this many characters of a known secret's start or end.
_FRAGMENT = 6


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, bearer token, and word holding a secret's fragment masked."""
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    for secret in secrets:
        if len(secret) < 4:
            continue
        text = text.replace(secret, REDACTED)
        if len(secret) >= 2 * _FRAGMENT:
            head, tail = re.escape(secret[:_FRAGMENT]), re.escape(secret[-_FRAGMENT:])
            text = re.sub(rf"[^\s'\",]*(?:{head}|{tail})[^\s'\",]*", REDACTED, text)
    return text


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


def _message(exc: BaseException, secrets: Iterable[str]) -> str:
    text = str(exc) or type(exc).__name__
    text = redact(text, secrets)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 3] + "..."
    return text


def map_litellm_error(exc: BaseException, *, provider: str, secrets: Iterable[str]) -> JibError:
    """The jib error for an exception a LiteLLM call raised; the caller chains `exc` as cause.

    Args:
        exc: what LiteLLM (or the SDK or transport under it) raised.
        provider: the model string, for the error's context.
        secrets: values to keep out of the message (the api key).
    """
    if isinstance(exc, JibError):
        return exc
    secrets = [s for s in secrets if s]
    message = _message(exc, secrets)
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
