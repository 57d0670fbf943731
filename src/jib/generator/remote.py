"""`RequestGenerator`: the tier every request-based (remote) generator sits on.

A provider that talks to an API implements one request: `request_message` (chat) and/or
`request_text` (completion). This tier turns that into the batch interface and owns what every
remote provider needs, once:

- the limits shared by the generator and all its copies: `max_connections` (adaptive: 429s cut
  it, successes grow it back), `min_delay_between_requests`, `rpm`, `tpm` (see
  `jib._concurrency`);
- retries of what the normalized errors mark retryable, with full-jitter backoff and the
  provider's `Retry-After` as a floor (see `jib._retry`);
- the request `timeout` as the budget of one item: attempts, backoff and pacing waits all fit in
  it (queueing behind the batch's other items for a slot does not count);
- the user's `wrap()` around each item's request (retries included, so `backoff` stacks on top);
- counting attempts and latency onto each result, and attempts onto the error an item failed
  with;
- plain-string answers turned into `GeneratedMessage` / `GeneratedText` in one place.

Local models keep the batch path of `Generator`: they gain from seeing a whole batch at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import Field, PrivateAttr

from jib._concurrency import RateExceedsDeadline, RequestLimiter
from jib._limits import MAX_DELAY_MS, MAX_WAIT_SECONDS
from jib._per_loop import RuntimeCache
from jib._retry import RetryPolicy
from jib.errors import (
    JibError,
    MalformedResponseError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from jib.generator.base import Generator
from jib.messages import GeneratedMessage, GeneratedText, Message, check_batch
from jib.params import GenerateParams
from jib.registry import provider_name_for

__all__ = ["RequestGenerator", "RetryRequested", "StreamNotHonoured"]

logger = logging.getLogger("jib.requests")

ResultT = TypeVar("ResultT", GeneratedMessage, GeneratedText)
T = TypeVar("T")

if sys.version_info >= (3, 11):
    from jib._deadlines import Deadline, deadline_after, enter_deadline

    _enter_deadline: Callable[[float], Deadline] | None = enter_deadline

    def _timeout_after(delay: float | None) -> Any:
        return contextlib.nullcontext() if delay is None else deadline_after(delay)

else:  # pragma: no cover - Python 3.10
    _enter_deadline = None

    def _timeout_after(delay: float | None) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def bounded() -> Any:
            task = asyncio.current_task()
            assert task is not None
            handle = (
                None if delay is None else asyncio.get_running_loop().call_later(delay, task.cancel)
            )
            try:
                yield
            except asyncio.CancelledError as exc:
                if handle is not None and handle.when() <= asyncio.get_running_loop().time():
                    raise TimeoutError from exc
                raise
            finally:
                if handle is not None:
                    handle.cancel()

        return bounded()


class StreamNotHonoured(Exception):
    """Raised by `request_message_stream` before any delta when the server answered without
    streaming and that answer cannot be read from here (LiteLLM hides it): the request tier then
    sends the request once more, plainly, as a counted attempt of its own."""


class RetryRequested(JibError):
    """Raised by a provider to have its request sent again at once (an HTTP hook's "retry").

    It counts against `max_retries`; when no retry is left (or the budget is spent), `final`
    is raised in its place.
    """

    def __init__(self, final: JibError) -> None:
        self.final = final
        super().__init__(str(final))


class _Attempts:
    """What the tier counted for one item: requests sent, and when the first one started."""

    __slots__ = ("count", "started")

    def __init__(self) -> None:
        self.count = 0
        self.started: float | None = None

    def stamp(self, result: GeneratedMessage | GeneratedText) -> None:
        """Write the attempts and the latency (from the first attempt's start) onto `result`."""
        result.attempts = self.count
        if self.started is not None:
            result.latency_ms = (time.monotonic() - self.started) * 1000


class RequestGenerator(Generator):
    """Base class of generators that send one request per item (LiteLLM, HTTP, callbacks).

    Implement `request_message` and/or `request_text`; each may return the full result or just
    the answer's text. Everything around a request (limits, retries, the timeout budget, the
    user's wrappers, attempt counting) is done here.

    Attributes:
        max_connections: the most requests in flight at once (per event loop). A 429 halves
            the limit in force, each success raises it by one again, up to this. When it is
            not set, `jib run -c N` raises it to N for the run (`with_concurrency`).
        min_delay_between_requests: milliseconds between the starts of two requests.
        rpm: requests per minute, shared by every use of this generator; `None` for no limit.
        tpm: tokens per minute (prompt estimate plus `max_tokens`, settled with the reported
            usage); `None` for no limit.
        max_retries: retries per request of what failed transiently (connection errors,
            timeouts, cut bodies, 408/409/429/5xx); 0 turns retries off.
        retry_backoff: seconds; retry `n` waits a random time up to `retry_backoff * 2**(n-1)`.
        max_retry_wait: the longest single wait, in seconds; a `Retry-After` longer than this
            fails the request at once instead.
    """

    max_connections: int = Field(default=10, ge=1, le=100_000)
    min_delay_between_requests: float = Field(
        default=0.0, ge=0, le=MAX_DELAY_MS, allow_inf_nan=False
    )
    rpm: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tpm: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_retries: int = Field(default=5, ge=0, le=100)
    retry_backoff: float = Field(default=0.05, ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)
    max_retry_wait: float = Field(default=60.0, gt=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)

    default_timeout: ClassVar[float | None] = None
    """Seconds an item may take when its params set no `timeout`; `None` for no budget."""

    _limiter: RequestLimiter | None = PrivateAttr(default=None)
    _cache: RuntimeCache = PrivateAttr(default_factory=RuntimeCache)
    _connections_floor: int = PrivateAttr(default=0)

    def model_post_init(self, context: Any, /) -> None:
        """Create the limiter now, so every copy (`wrap()`, `model_copy`) shares it."""
        super().model_post_init(context)
        self._request_limiter()

    # -- what providers implement --------------------------------------------------------------

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage | GeneratedText | str:
        """Send one chat request and return its answer (a string is the assistant's text).

        Raise jib's `ProviderError` family for provider failures, with `retry_after` set when
        the provider said how long to wait; what is marked `retryable` is retried here.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not support chat: it does not implement "
            "request_message(). Use .complete() if it supports text."
        )

    async def request_text(
        self, text: str, params: GenerateParams
    ) -> GeneratedText | GeneratedMessage | str:
        """Send one text-completion request and return its answer; as `request_message`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support text completion: it does not implement "
            "request_text(). Use .chat() if it supports chat."
        )

    def check_request(self, item: Sequence[Message] | str, params: GenerateParams) -> None:
        """Raise a jib error when this provider cannot carry what one item holds (a content
        part, a parameter), before anything is sent: the item then fails at once, its error's
        `attempts` unset. By default everything is carried."""

    def request_timeout(self, params: GenerateParams) -> float | None:
        """The budget of one item in seconds: the params' `timeout`, else `default_timeout`."""
        return params.timeout if params.timeout is not None else self.default_timeout

    def estimate_tokens(self, input: Sequence[Message] | str, params: GenerateParams) -> int:
        """Tokens a request is charged up front against `tpm` (settled with the real usage)."""
        if isinstance(input, str):
            characters = len(input)
        else:
            characters = sum(len(message.content) + 16 for message in input)
        return characters // 4 + 1 + (params.max_tokens or 0)

    @classmethod
    def supports_chat(cls) -> bool:
        """Whether this class implements `request_message`."""
        return cls.request_message is not RequestGenerator.request_message

    @classmethod
    def supports_text(cls) -> bool:
        """Whether this class implements `request_text`."""
        return cls.request_text is not RequestGenerator.request_text

    # -- the batch interface -------------------------------------------------------------------

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        """One request per conversation, concurrently within the limits, each retried alone."""
        check_batch("generate_messages", messages, params)
        if not self.supports_chat():
            await self.request_message([], GenerateParams())  # raises NotImplementedError
        return await self._run_batch(self.request_message, _as_message, messages, params)

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        """One request per text, concurrently within the limits, each retried alone."""
        check_batch("generate_texts", texts, params)
        if not self.supports_text():
            await self.request_text("", GenerateParams())  # raises NotImplementedError
        return await self._run_batch(self.request_text, _as_text, texts, params)

    def before_batch(self) -> None:
        """Called once per batch before any request: fail the whole batch early (a missing
        package, say) by raising here."""

    async def _run_batch(
        self,
        send: Callable[[Any, GenerateParams], Awaitable[Any]],
        convert: Callable[[Any], ResultT],
        inputs: Sequence[Any],
        params: Sequence[GenerateParams],
    ) -> list[ResultT | BaseException]:
        """Run every item concurrently; each failure is that item's result.

        A `BaseException` that is not an `Exception` (cancellation, KeyboardInterrupt) is
        raised, not returned: the batch stops.
        """
        self.before_batch()
        if not inputs:
            return []
        limiter = self._request_limiter()
        wrapped = bool(self._runtime["_wrappers"])
        item = self._item if wrapped else self._send_item
        if len(inputs) == 1 and not wrapped:
            # A batch of one needs no task of its own (and its cancellation is the caller's).
            try:
                return [await item(limiter, send, convert, inputs[0], params[0])]
            except Exception as exc:
                return [exc]
        results = await _gather(
            [
                item(limiter, send, convert, one, one_params)
                for one, one_params in zip(inputs, params, strict=True)
            ],
            # A user's wrapper may set context variables: each item then runs in a task (and
            # a copy of the context) of its own, as it always did.
            first_inline=not wrapped,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        return results

    async def _item(
        self,
        limiter: RequestLimiter,
        send: Callable[[Any, GenerateParams], Awaitable[Any]],
        convert: Callable[[Any], ResultT],
        item: Any,
        params: GenerateParams,
    ) -> ResultT:
        """One item through the user's `wrap()` wrappers: each call of the wrapped request
        is a `_send_item` of its own (its own retries and budget), counted together."""
        attempts = _Attempts()

        async def request(item: Any, params: GenerateParams) -> ResultT:
            return await self._send_item(limiter, send, convert, item, params, attempts)

        try:
            result = await self.wrapped(request)(item, params)
        except JibError as error:
            _annotate(error, attempts)
            raise
        attempts.stamp(result)
        return result

    async def _send_item(
        self,
        limiter: RequestLimiter,
        send: Callable[[Any, GenerateParams], Awaitable[Any]],
        convert: Callable[[Any], ResultT],
        item: Any,
        params: GenerateParams,
        before: _Attempts | None = None,
    ) -> ResultT:
        """Send `item` until it succeeds, fails for good, or its budget runs out; count its
        attempts and latency onto the result, or its attempts onto the error.

        One coroutine for the whole way (checks, slots, deadline, retries), so each time the
        request waits on the network there is one frame less to pass through per layer saved;
        the slot and the deadline are taken without a coroutine when no one waits.
        """
        run = _Run(self, limiter, item, params, before)
        try:
            self.check_request(item, params)
            while True:
                if not run.begin_now():
                    await run.begin()
                try:
                    deadline = run.deadline
                    if deadline is None:
                        answer = await send(item, params)
                    elif _enter_deadline is not None:
                        block = _enter_deadline(deadline)
                        try:
                            answer = await send(item, params)
                        except BaseException as exc:
                            block.leave(exc)  # TimeoutError when the deadline cut it short
                            raise
                        block.leave(None)
                    else:  # pragma: no cover - Python 3.10
                        async with _timeout_after(max(0.0, deadline - time.monotonic())):
                            answer = await send(item, params)
                except TimeoutError:
                    await run.failed(run.timed_out())
                    continue
                except JibError as error:
                    await run.failed(error)
                    continue
                except BaseException:
                    run.end(succeeded=False)
                    raise
                run.succeeded(answer)
                break
        except JibError as error:
            error.attempts = run.count or None
            raise
        finally:
            if before is not None:
                before.count, before.started = run.count, run.started
        result = convert(answer)
        run.stamp(result)
        return result

    async def stream_messages(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """Stream one conversation's answer: text deltas, then the finished message.

        Within the same limits, timeout budget and attempt counting as a batch; a failure is
        retried only before the first delta (text already given out cannot be taken back). When
        the provider reports that the server ignored `stream` (`StreamNotHonoured`), the next
        attempt is a plain request. `wrap()` wrappers do not apply to streams: a wrapper takes a
        coroutine function, and a stream is not one. The finished message's
        `extra["first_delta_ms"]` is the time from the first attempt's start to the first delta.
        """
        if not self.supports_chat():
            await self.request_message([], GenerateParams())  # raises NotImplementedError
        self.before_batch()
        self.check_request(messages, params)
        run = attempts = _Run(self, self._request_limiter(), messages, params)
        streaming = True
        first_delta_ms: float | None = None
        while True:
            await run.begin()
            given_out = False
            final: GeneratedMessage | None = None
            pieces = (
                self.request_message_stream(messages, params)
                if streaming
                else _whole(self.request_message(messages, params))
            )
            try:
                async with _timeout_after(
                    None if run.deadline is None else max(0.0, run.deadline - time.monotonic())
                ):
                    async for piece in pieces:
                        if isinstance(piece, str):
                            if piece:
                                if not given_out and attempts.started is not None:
                                    first_delta_ms = (time.monotonic() - attempts.started) * 1000
                                given_out = True
                                yield piece
                        else:
                            final = _as_message(piece)
                if final is None:
                    raise MalformedResponseError(
                        "the stream ended without a finished answer",
                        provider=self._provider_label,
                    )
            except StreamNotHonoured:
                run.end(succeeded=True)
                streaming = False
                continue
            except (TimeoutError, JibError) as raised:
                error = run.timed_out() if isinstance(raised, TimeoutError) else raised
                if given_out:
                    run.end(succeeded=False)
                    _annotate(error, attempts)
                    raise error from None
                try:
                    await run.failed(error)
                except JibError as final_error:
                    _annotate(final_error, attempts)
                    raise
                continue
            except BaseException:
                run.end(succeeded=False)
                raise
            run.end(succeeded=True, result=final)
            attempts.stamp(final)
            if first_delta_ms is not None:
                # Time to the first delta, from the first attempt's start (as `latency_ms`).
                final.extra = {**final.extra, "first_delta_ms": first_delta_ms}
            yield final
            return

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage | GeneratedText]:
        """Send one chat request as a stream: yield text deltas, then the whole answer.

        Providers that can stream override this; by default the whole answer comes at once.
        """
        yield _as_message(await self.request_message(messages, params))

    # -- limits shared by copies ---------------------------------------------------------------

    def with_concurrency(self, concurrency: int) -> RequestGenerator:
        """A copy that may keep `concurrency` requests in flight (`jib run -c N`), when this
        generator's `max_connections` was left at its default; this generator itself when its
        `max_connections` was set, or is at least `concurrency` already.

        Only the copy's limiter changes: its `max_connections` and its identifier stay as they
        are (so a stored run matches the same identifier whatever the concurrency). The copy and
        its own copies share a limiter of their own, adaptive as usual: a 429 halves the raised
        limit, successes grow it back up to `concurrency`.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if "max_connections" in self.model_fields_set or concurrency <= self._connection_cap():
            return self
        copy = self.model_copy()
        copy._connections_floor = concurrency
        copy._request_limiter()
        return copy

    def _connection_cap(self) -> int:
        """The most requests in flight: `max_connections`, or the higher cap `with_concurrency`
        gave a copy whose `max_connections` was not set."""
        floor: int = self._runtime["_connections_floor"]
        if floor > self.max_connections and "max_connections" not in self.model_fields_set:
            return floor
        return self.max_connections

    def _request_limiter(self) -> RequestLimiter:
        """The shared limiter; a copy whose limit settings were changed gets its own."""
        settings = (
            self._connection_cap(),
            self.min_delay_between_requests,
            self.rpm,
            self.tpm,
        )
        limiter: RequestLimiter | None = self._runtime["_limiter"]
        if limiter is None or limiter.settings != settings:
            limiter = self._limiter = RequestLimiter(*settings)
        return limiter

    def with_retries(
        self,
        *,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        max_retry_wait: float | None = None,
    ) -> RequestGenerator:
        """A copy with other retry settings (validated), sharing this generator's limits."""
        copy = self.model_copy()
        for name, value in (
            ("max_retries", max_retries),
            ("retry_backoff", retry_backoff),
            ("max_retry_wait", max_retry_wait),
        ):
            if value is not None:
                setattr(copy, name, value)
        return copy

    def _identifier_attributes(self, include_secrets: bool) -> Iterator[tuple[str, str]]:
        # The provider's own attributes (api_base, spec) read first, the tier's settings after.
        items = list(super()._identifier_attributes(include_secrets))
        yield from (item for item in items if item[0] not in _TIER_FIELDS)
        yield from (item for item in items if item[0] in _TIER_FIELDS)

    @property
    def _provider_label(self) -> str:
        """`provider!model` (the model alone for the default provider or an unregistered
        class), as errors name it; worked out once per model."""
        model = self.model
        cache: RuntimeCache = self._runtime["_cache"]
        known: tuple[str, str] | None = cache.get("label")
        if known is not None and known[0] is model:
            return known[1]
        registered = provider_name_for(type(self)) is not None
        label = self.to_identifier(short=True) if registered else model
        cache["label"] = (model, label)
        return label


class _Run(_Attempts):
    """One item's way through the tier: slots, pacing, the deadline and the retry decisions,
    and its attempts (counted on from `before`'s: the earlier requests of one item sent
    through a `wrap()` wrapper)."""

    __slots__ = (
        "deadline",
        "generator",
        "limiter",
        "retries",
        "slots",
        "timeout",
        "tokens",
    )

    def __init__(
        self,
        generator: RequestGenerator,
        limiter: RequestLimiter,
        item: Any,
        params: GenerateParams,
        before: _Attempts | None = None,
    ) -> None:
        self.generator = generator
        self.limiter = limiter
        self.slots = limiter.state()
        if before is None:
            self.count = 0
            self.started: float | None = None
        else:
            self.count = before.count
            self.started = before.started
        self.timeout = generator.request_timeout(params)
        self.tokens = generator.estimate_tokens(item, params) if generator.tpm is not None else 0
        self.deadline: float | None = None
        self.retries = 0

    def begin_now(self) -> bool:
        """`begin` without waiting, when a slot is free and nothing paces requests (the
        common case); `False` when `begin` must be awaited instead."""
        if not self.slots.take_now():
            return False
        self._clock_on()
        self.count += 1
        return True

    def _clock_on(self) -> None:
        """Start the item's clock and its budget at its first attempt."""
        now = time.monotonic()
        if self.deadline is None and self.timeout is not None:
            self.deadline = now + self.timeout
        if self.started is None:
            self.started = now

    async def begin(self) -> None:
        """Take a slot and wait for pacing; count the attempt. The budget starts at the first.

        Raises:
            ProviderTimeoutError: pacing would take the request past its deadline.
        """
        slots = self.slots
        await slots.take()
        self._clock_on()
        try:
            if slots.buckets:
                await self.limiter.pace(self.tokens, self.deadline)
        except RateExceedsDeadline as exc:
            self.slots.give_back()
            raise ProviderTimeoutError(
                f"{exc.setting} would delay this request by {exc.wait:.3g}s, past its "
                f"timeout of {self.timeout:g}s; raise the timeout or the limit",
                provider=self.generator._provider_label,
                retryable=False,
            ) from None
        except BaseException:
            self.slots.give_back()
            raise
        self.count += 1

    def policy(self) -> RetryPolicy:
        """The generator's retry settings (read when an attempt fails: most never do)."""
        generator = self.generator
        return RetryPolicy(generator.max_retries, generator.retry_backoff, generator.max_retry_wait)

    def timed_out(self) -> ProviderTimeoutError:
        """The error for an attempt cut off by the deadline."""
        return ProviderTimeoutError(
            f"no answer within {self.timeout:g}s (the request's timeout, retries included)",
            provider=self.generator._provider_label,
        )

    def end(self, *, succeeded: bool, result: Any = None) -> None:
        """Give the slot back after an attempt that did not fail with a jib error."""
        if succeeded:
            self.succeeded(result)
        else:
            self.slots.give_back()

    def succeeded(self, result: Any) -> None:
        """Give the slot back after a successful attempt, settling its `tpm` charge with the
        usage it reported."""
        self.slots.give_back_ok()
        if self.tokens:
            usage = getattr(result, "usage", None)
            if usage is not None and usage.total_tokens:
                self.limiter.settle_tokens(self.tokens, usage.total_tokens)

    async def failed(self, error: JibError) -> None:
        """Give the slot back after `error`; wait before the retry, or raise to give up."""
        self.slots.give_back(rate_limited=isinstance(error, RateLimitError))
        deadline = self.deadline
        if isinstance(error, RetryRequested):
            if self.retries >= self.generator.max_retries or (
                deadline is not None and time.monotonic() >= deadline
            ):
                raise error.final from None
            delay: float | None = 0.0
            detail = ""
        else:
            policy = self.policy()
            delay = policy.delay(error, self.retries)
            detail = policy.refusal(error, self.retries) if delay is None else ""
        if delay is not None and deadline is not None and time.monotonic() + delay >= deadline:
            delay = None
            if time.monotonic() < deadline:
                detail = f"not retried: its timeout of {self.timeout:g}s would pass"
        if delay is None:
            if detail and isinstance(error, ProviderError):
                error.add_detail(detail)
            raise error
        self.retries += 1
        logger.info(
            "%s: %s; retry %d/%d in %.3fs",
            self.generator._provider_label,
            type(error).__name__,
            self.retries,
            self.generator.max_retries,
            delay,
        )
        await asyncio.sleep(delay)


async def _gather(
    items: list[Coroutine[Any, Any, T]], *, first_inline: bool = True
) -> list[T | BaseException]:
    """Each item's result or exception, run concurrently: `asyncio.gather(...,
    return_exceptions=True)` for coroutines, with less bookkeeping per item. With
    `first_inline`, the first item runs in the caller's task (a task costs more than the rest of
    an item's way through the tier; jib's own context variables are always reset, so none
    leaks to the caller); each other task puts its own outcome, so no done callback is
    scheduled per item.

    When the caller is cancelled, the items are cancelled and waited for, then the
    cancellation goes on (as `gather` does).
    """
    loop = asyncio.get_running_loop()
    gathered = _Gathered[T](len(items), loop.create_future())
    start = 1 if first_inline else 0
    tasks = [
        loop.create_task(_into(gathered, index, items[index])) for index in range(start, len(items))
    ]
    try:
        if first_inline:
            try:
                outcome: T | BaseException = await items[0]
            except Exception as exc:
                outcome = exc
            gathered.put(0, outcome)
        if not gathered.done.done():
            await gathered.done
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise
    return gathered.results


class _Gathered(Generic[T]):
    """The outcomes of `_gather`'s items as they come in; `done` when the last one is in."""

    __slots__ = ("done", "left", "results")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.results: list[T | BaseException] = [None] * size  # type: ignore[list-item]
        self.left = size
        self.done = done

    def put(self, index: int, outcome: T | BaseException) -> None:
        self.results[index] = outcome
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


async def _into(gathered: _Gathered[T], index: int, item: Coroutine[Any, Any, T]) -> None:
    try:
        outcome: T | BaseException = await item
    except (Exception, asyncio.CancelledError) as exc:
        outcome = exc
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: counted, and raised on
        gathered.put(index, exc)
        raise
    gathered.put(index, outcome)


async def _whole(answer: Awaitable[Any]) -> AsyncIterator[Any]:
    yield await answer


def _annotate(error: BaseException, attempts: _Attempts) -> None:
    if isinstance(error, JibError):
        error.attempts = attempts.count or None


_TIER_FIELDS = frozenset(RequestGenerator.model_fields) - frozenset(Generator.model_fields)


def _as_message(answer: GeneratedMessage | GeneratedText | str) -> GeneratedMessage:
    if isinstance(answer, GeneratedMessage):
        return answer
    if isinstance(answer, GeneratedText):
        return GeneratedMessage(
            Message("assistant", answer.text), answer.stop_reason, answer.usage, answer.extra
        )
    if isinstance(answer, str):
        return GeneratedMessage(Message("assistant", answer))
    raise TypeError(
        "request_message() must return a GeneratedMessage, a GeneratedText or a string, not "
        f"{type(answer).__name__}"
    )


def _as_text(answer: GeneratedText | GeneratedMessage | str) -> GeneratedText:
    if isinstance(answer, GeneratedText):
        return answer
    if isinstance(answer, GeneratedMessage):
        return GeneratedText(answer.message.content, answer.stop_reason, answer.usage, answer.extra)
    if isinstance(answer, str):
        return GeneratedText(answer)
    raise TypeError(
        "request_text() must return a GeneratedText, a GeneratedMessage or a string, not "
        f"{type(answer).__name__}"
    )
