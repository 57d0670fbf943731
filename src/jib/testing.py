"""Generators for tests and offline runs: no network, no model, deterministic.

Use them in your own test suites the way jib's tests do:

>>> import asyncio
>>> from jib.testing import FixedGenerator
>>> chat = asyncio.run(FixedGenerator(model="demo", text="Paris").chat("Capital of France?").run())
>>> chat.content
'Paris'

Each is registered under a short provider name, so identifiers work offline too:
`echo!demo`, `fixed!demo,text=Paris`, `fail!demo,fail_times=2,error=RateLimitError`,
`scripted!demo,script=[...]`.

`ScriptedGenerator` answers from a script of messages (text, tool calls, parts), so tool loops
(`.using`) and structured output (`.structured`) can be tested offline:

>>> from jib import FunctionCall, ToolCall
>>> from jib.testing import ScriptedGenerator
>>> def double(n: int) -> int:
...     "Double a number."
...     return 2 * n
>>> call = ToolCall("c1", FunctionCall("double", '{"n": 21}'))
>>> model = ScriptedGenerator(model="demo", script=[[call], "It is 42."])
>>> chat = asyncio.run(model.chat("Double 21").using(double).run())
>>> print(chat.conversation)  # doctest: +NORMALIZE_WHITESPACE
[user]: Double 21
<BLANKLINE>
[assistant]:
  -> double({"n": 21})
<BLANKLINE>
[tool]: 42
<BLANKLINE>
[assistant]: It is 42.

Every generator here records the size of each batch it was called with in `batch_sizes`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator

from jib import errors
from jib.content import ContentText, describe_part
from jib.generator.base import Generator
from jib.generator.remote import RequestGenerator
from jib.messages import GeneratedMessage, GeneratedText, Message, StopReason, Usage
from jib.params import GenerateParams
from jib.tools import ToolCall

__all__ = [
    "AlwaysFailGenerator",
    "CallbackGenerator",
    "EchoGenerator",
    "FailingGenerator",
    "FixedGenerator",
    "ScriptExhaustedError",
    "ScriptedGenerator",
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


def _text_of(message: Message) -> str:
    """The message's text, then a label for each part that is not text."""
    if not message.has_parts:
        return message.content
    labels = [describe_part(p) for p in message.content_parts if not isinstance(p, ContentText)]
    return " ".join(filter(None, [message.content, *labels]))


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
        texts = [_text_of(conversation[-1]) if conversation else "" for conversation in messages]
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

    Parts that are not text are named after the text (`_describe_part`): a message of
    `"What is this?"` and a 12 KB PNG is echoed `What is this? [image/png 12 KB]`.

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
    response_cacheable: ClassVar[bool] = False  # its answers depend on how often it was asked


class AlwaysFailGenerator(_TestGenerator):
    """Fails every item with `error` (a jib error class name)."""

    error: ErrorName = "ServerError"
    message: str = "injected failure"

    async def _answer(self, text: str, params: GenerateParams) -> str:
        raise _make_error(self.error, self.message)

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"error", "message"}
    response_cacheable: ClassVar[bool] = False  # it never answers


class ScriptExhaustedError(errors.JibError):
    """A `ScriptedGenerator` was asked for an answer past the end of its script."""


class ScriptedGenerator(_TestGenerator):
    """Answers from `script`: a conversation's first answer is the first entry, its second the
    second, and so on.

    Which entry answers is the count of assistant messages already in the conversation, so
    every chat of a batch follows the script from its start, and each round of a tool loop
    (`.using`) or each correction of structured output (`.structured`) takes the next entry.
    An entry is text, a `Message` (with tool calls, parts), an OpenAI-shaped message dict
    (`role` may be left out) or a list of `ToolCall`s; entries are kept as OpenAI-shaped
    dicts, so the script goes into an identifier (`scripted!demo,script=[...]`) like any
    value. An answer with calls stops with `tool_calls`, others with `stop`; usage counts
    words. `stream()` gives an answer's text word by word.

    Every conversation it was asked to answer is kept, with its params, in `received`.

    Raises (as the item's failure):
        ScriptExhaustedError: a conversation asks for an answer past the end of the script.
    """

    script: list[str | dict[str, Any]] = Field(default_factory=list)

    @field_validator("script", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if isinstance(value, (str, Message, Mapping)):
            raise ValueError("script must be a list of entries (one per answer)")
        if not isinstance(value, Sequence):
            return value
        entries = []
        for index, item in enumerate(value):
            try:
                entries.append(_entry(item))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"script entry {index}: {exc}") from None
        return entries

    @property
    def received(self) -> list[tuple[list[Message], GenerateParams]]:
        """Every conversation it was asked to answer (retries included), with its params."""
        received: list[tuple[list[Message], GenerateParams]] = self._state.setdefault(
            "received", []
        )
        return received

    def answer_for(self, conversation: Sequence[Message]) -> GeneratedMessage:
        """The scripted answer to `conversation`.

        Raises:
            ScriptExhaustedError: the script has no entry for it.
        """
        turn = sum(1 for message in conversation if message.role == "assistant")
        if turn >= len(self.script):
            raise ScriptExhaustedError(
                f"the script of {self.model!r} has {len(self.script)} answer(s); this "
                f"conversation asks for answer {turn + 1}"
            )
        message = Message.from_any(self.script[turn], default_role="assistant")
        prompt = sum(_count_tokens(_text_of(m)) for m in conversation)
        return GeneratedMessage(
            message,
            "tool_calls" if message.tool_calls else "stop",
            Usage(prompt, _count_tokens(_text_of(message))),
        )

    async def _scripted(
        self, conversation: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        self._state["calls"] += 1
        self.received.append((list(conversation), params))
        return self.answer_for(conversation)

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Answer each conversation from the script."""
        self._state["batch_sizes"].append(len(messages))
        call = self.wrapped(self._scripted)
        results: list[GeneratedMessage | BaseException] = []
        for conversation, item_params in zip(messages, params, strict=True):
            try:
                results.append(await call(conversation, item_params))
            except Exception as exc:  # one failing item must not fail the batch
                results.append(exc)
        return results

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        """Complete each text with the script's first entry's text."""
        conversations = [[Message("user", text)] for text in texts]
        return [
            result
            if isinstance(result, BaseException)
            else GeneratedText(result.message.content, result.stop_reason, result.usage)
            for result in await self.generate_messages(conversations, params)
        ]

    async def stream_messages(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """The scripted answer's text word by word, then the answer."""
        (result,) = await self.generate_messages([messages], [params])
        if isinstance(result, BaseException):
            raise result
        for piece in re.findall(r"\s*\S+|\s+$", result.message.content):
            yield piece
        yield result

    inert_options: ClassVar[frozenset[str]] = _TestGenerator.inert_options | {"script"}


def _entry(value: Any) -> str | dict[str, Any]:
    """A script entry as text or an OpenAI-shaped message dict (checked now, not when used)."""
    if isinstance(value, str):
        return value
    if isinstance(value, ToolCall):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, ToolCall) for v in value):
        return Message("assistant", "", tool_calls=value).to_dict()
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, Mapping):
        data = {"role": "assistant", "content": "", **value}
        return Message.from_any(data).to_dict()
    raise TypeError(
        "an entry is text, a Message, a message dict or a list of ToolCalls, not "
        f"{type(value).__name__}"
    )


class CallbackGenerator(RequestGenerator):
    """Answers with whatever `callback(messages, params)` returns (sync or async).

    For text completion the callback gets one user message holding the text. It sits on the
    request tier like a remote provider: items of a batch run concurrently within the limits
    (`max_connections`, `rpm`, …), and a callback raising a retryable jib error (say
    `jib.errors.ServerError("busy", status_code=503)`) is retried up to `max_retries`. A callback
    that raises fails only its own item. The callback may return a string, a `GeneratedText`,
    a `GeneratedMessage`, or a `Message` (with tool calls: stop reason `tool_calls`).
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
    ) -> GeneratedText | GeneratedMessage:
        """Call the callback with the conversation."""
        answer = self.callback(list(messages), params)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, (GeneratedText, GeneratedMessage)):
            return answer
        if isinstance(answer, Message):
            return GeneratedMessage(answer, "tool_calls" if answer.tool_calls else "stop")
        if not isinstance(answer, str):
            raise TypeError(
                "the callback must return a string, a Message, a GeneratedText or a "
                f"GeneratedMessage, not {type(answer).__name__}"
            )
        return GeneratedText(answer, "stop")

    async def request_text(
        self, text: str, params: GenerateParams
    ) -> GeneratedText | GeneratedMessage:
        """Call the callback with the text as one user message."""
        return await self.request_message([Message("user", text)], params)

    response_cacheable: ClassVar[bool] = False  # its answers are the callback's, unseen


def _make_error(name: str, message: str) -> errors.JibError:
    cls = getattr(errors, name)
    if issubclass(cls, errors.ProviderError):
        error: errors.JibError = cls(
            message, status_code=_STATUS_FOR_ERROR.get(name), provider="test"
        )
        return error
    created: errors.JibError = cls(message)
    return created
