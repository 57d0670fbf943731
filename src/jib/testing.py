"""Generators for tests and offline runs: no network, no model, deterministic.

Use them in your own test suites the way jib's tests do:

>>> import asyncio
>>> from jib.testing import FixedGenerator
>>> chat = asyncio.run(FixedGenerator(model="demo", text="Paris").chat("Capital of France?"))
>>> chat.content
'Paris'

Each is registered under a short provider name, so identifiers work offline too:
`echo!demo`, `fixed!demo,text=Paris`, `fail!demo,fail_times=2,error=RateLimitError`.

Every generator here records the size of each batch it was called with in `batch_sizes`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from jib import errors
from jib.generator.base import Generator
from jib.generator.remote import RequestGenerator
from jib.messages import GeneratedMessage, GeneratedText, Message, StopReason, Usage
from jib.params import GenerateParams

__all__ = [
    "AlwaysFailGenerator",
    "CallbackGenerator",
    "EchoGenerator",
    "FailingGenerator",
    "FixedGenerator",
]

ErrorName = Literal[
    "RateLimitError",
    "AuthenticationError",
    "BadRequestError",
    "ContextLengthError",
    "ProviderTimeoutError",
    "ServerError",
    "ProviderConnectionError",
    "ProcessingError",
]
_STATUS_FOR_ERROR = {
    "RateLimitError": 429,
    "AuthenticationError": 401,
    "BadRequestError": 400,
    "ContextLengthError": 400,
    "ServerError": 500,
}


def _count_tokens(text: str) -> int:
    return len(text.split())


def _reply(text: str, prompt_tokens: int, params: GenerateParams) -> GeneratedText:
    """Apply `max_tokens` (in words) and `stop` like a real model would."""
    stop_reason: StopReason = "stop"
    for sequence in params.stop or ():
        index = text.find(sequence)
        if index >= 0:
            text = text[:index]
    words = text.split(" ")
    if params.max_tokens is not None and len(words) > params.max_tokens:
        text = " ".join(words[: params.max_tokens])
        stop_reason = "length"
    return GeneratedText(text, stop_reason, Usage(prompt_tokens, _count_tokens(text)))


class _TestGenerator(Generator):
    """Answers each item through `_answer`, one at a time, with the generator's wrappers."""

    _state: dict[str, Any] = PrivateAttr(default_factory=lambda: {"batch_sizes": [], "calls": 0})

    @property
    def batch_sizes(self) -> list[int]:
        """The size of every batch this generator (and its wrapped copies) was called with."""
        sizes: list[int] = self._state["batch_sizes"]
        return sizes

    @property
    def calls(self) -> int:
        """How many single items were attempted, retries included."""
        count: int = self._state["calls"]
        return count

    async def _answer(self, text: str, params: GenerateParams) -> str:
        raise NotImplementedError

    # -- what these providers say about themselves (see `Generator`) ---------------------------

    offline: ClassVar[bool] = True
    inert_options: ClassVar[frozenset[str]] = frozenset({"extra.*"})  # `extra` is ignored

    async def _one(self, text: str, prompt_tokens: int, params: GenerateParams) -> GeneratedText:
        self._state["calls"] += 1
        answer = await self._answer(text, params)
        return _reply(answer, prompt_tokens, params)

    async def _batch(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> list[GeneratedText | BaseException]:
        self._state["batch_sizes"].append(len(texts))
        call = self.wrapped(self._one)
        results: list[GeneratedText | BaseException] = []
        for text, item_params in zip(texts, params, strict=True):
            try:
                results.append(await call(text, _count_tokens(text), item_params))
            except Exception as exc:  # one failing item must not fail the batch
                results.append(exc)
        return results

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Answer the last message of each conversation."""
        texts = [conversation[-1].content if conversation else "" for conversation in messages]
        return [
            result
            if isinstance(result, BaseException)
            else GeneratedMessage(
                Message("assistant", result.text), result.stop_reason, result.usage
            )
            for result in await self._batch(texts, params)
        ]

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        """Complete each text."""
        return await self._batch(texts, params)


class EchoGenerator(_TestGenerator):
    """Answers with the last message (or the text) it was given, after `prefix`.

    `max_tokens` cuts the answer to that many words (stop reason `length`); `stop` sequences cut
    it too. Usage counts words.
    """

    prefix: str = ""

    async def _answer(self, text: str, params: GenerateParams) -> str:
        return self.prefix + text

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"prefix"}


class FixedGenerator(_TestGenerator):
    """Always answers `text`."""

    text: str = "OK"

    async def _answer(self, text: str, params: GenerateParams) -> str:
        return self.text

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"text"}


class FailingGenerator(_TestGenerator):
    """Fails the first `fail_times` items it is asked (with `error`), then echoes them.

    With `fail_times=2`, a retry wrapper that tries three times succeeds.
    """

    fail_times: int = Field(default=1, ge=0)
    error: ErrorName = "ServerError"

    async def _answer(self, text: str, params: GenerateParams) -> str:
        failures: int = self._state.setdefault("failures", 0)
        if failures < self.fail_times:
            self._state["failures"] = failures + 1
            raise _make_error(self.error, f"injected failure {failures + 1} of {self.fail_times}")
        return text

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"fail_times", "error"}


class AlwaysFailGenerator(_TestGenerator):
    """Fails every item with `error` (a jib error class name)."""

    error: ErrorName = "ServerError"
    message: str = "injected failure"

    async def _answer(self, text: str, params: GenerateParams) -> str:
        raise _make_error(self.error, self.message)

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"error", "message"}


class CallbackGenerator(RequestGenerator):
    """Answers with whatever `callback(messages, params)` returns (sync or async).

    For text completion the callback gets one user message holding the text. It sits on the
    request tier like a remote provider: items of a batch run concurrently within the limits
    (`max_connections`, `rpm`, …), and a callback raising a retryable jib error (say
    `jib.errors.ServerError("busy", status_code=503)`) is retried up to `max_retries`. A callback
    that raises fails only its own item. The callback may return a string or a `GeneratedText`.
    """

    callback: Callable[..., Any]
    _batch_sizes: list[int] = PrivateAttr(default_factory=list)

    @property
    def batch_sizes(self) -> list[int]:
        """The size of every batch this generator was called with."""
        return self._batch_sizes

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Answer each conversation with the callback."""
        self._batch_sizes.append(len(messages))
        return await super().generate_messages(messages, params)

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        """Complete each text with the callback."""
        self._batch_sizes.append(len(texts))
        return await super().generate_texts(texts, params)

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedText:
        """Call the callback with the conversation."""
        answer = self.callback(list(messages), params)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, GeneratedText):
            return answer
        if not isinstance(answer, str):
            raise TypeError(f"the callback must return a string, not {type(answer).__name__}")
        return GeneratedText(answer, "stop")

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Call the callback with the text as one user message."""
        return await self.request_message([Message("user", text)], params)


def _make_error(name: str, message: str) -> errors.JibError:
    cls = getattr(errors, name)
    if issubclass(cls, errors.ProviderError):
        error: errors.JibError = cls(
            message, status_code=_STATUS_FOR_ERROR.get(name), provider="test"
        )
        return error
    created: errors.JibError = cls(message)
    return created
