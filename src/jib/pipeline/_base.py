"""Machinery shared by `ChatPipeline` and `CompletionPipeline`.

A pipeline is an immutable description of work: a generator, an input, params, callbacks and an
error policy. Every builder method returns a new pipeline. Running it makes one batch call to
the generator per batch (not one per item) and turns each result into a record.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Generator as PyGenerator
from typing import Any, Generic, Literal, TypeVar

from jib._conversation import SESSION_KEY, current_session, using_session
from jib.errors import JibError
from jib.generator.base import Generator, Wrapper
from jib.identifiers import get_generator
from jib.params import GenerateParams
from jib.pipeline._gather import gather_all

__all__ = ["OnFailed", "Pipeline", "session_to_metadata"]

OnFailed = Literal["raise", "include", "skip"]
_ON_FAILED = ("raise", "include", "skip")

InputT = TypeVar("InputT")
RecordT = TypeVar("RecordT")
ResultT = TypeVar("ResultT")
SelfT = TypeVar("SelfT", bound="Pipeline[Any, Any, Any]")


def _sample_indexes(
    params_list: list[GenerateParams], samples: Sequence[int] | None
) -> dict[int, int]:
    """The response cache's sample index of each item, by the identity of its params object:
    an item of sample `s > 0` gets a params object of its own (an equal copy), which the
    rounds of a chat hand on unchanged to every request they make for it."""
    by_params: dict[int, int] = {}
    if samples is None:
        return by_params
    for index, sample in enumerate(samples):
        if sample:
            params_list[index] = params_list[index].model_copy()
            by_params[id(params_list[index])] = sample
    return by_params


async def _resolve(value: Any) -> Any:
    """Await `value` if it is awaitable (callbacks may be sync or async)."""
    if inspect.isawaitable(value):
        return await value
    return value


def session_to_metadata(extra: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """`extra` without its server-side session, which moves into `metadata`: the conversation's
    session belongs to the chat, and continuing the chat carries its metadata
    (`jib._conversation`)."""
    extra = dict(extra)
    metadata[SESSION_KEY] = extra.pop(SESSION_KEY)
    return extra


class Pipeline(Generic[InputT, RecordT, ResultT]):
    """The shared builder and runner; see `ChatPipeline` and `CompletionPipeline`.

    Type parameters: the input of one item (messages or text), the record a run makes (`Chat`,
    `Completion`) and the generator's result for one item.
    """

    __slots__ = (
        "_catch",
        "_input",
        "_maps",
        "_merged",
        "_metadata",
        "_response_cache",
        "_retry",
        "_thens",
        "_watchers",
        "generator",
        "params",
    )

    def __init__(
        self,
        generator: Generator,
        input: InputT,
        params: GenerateParams | None = None,
    ) -> None:
        self.generator = generator
        self._input = input
        self.params = params if params is not None else GenerateParams()
        self._thens: tuple[Callable[[RecordT], Any], ...] = ()
        self._maps: tuple[Callable[[list[RecordT]], Any], ...] = ()
        self._watchers: tuple[Callable[[list[RecordT]], Any], ...] = ()
        self._metadata: dict[str, Any] = {}
        self._catch: tuple[type[BaseException], ...] = (JibError,)
        self._retry: dict[str, Any] = {}
        self._merged: _MergedParams | None = None
        self._response_cache: Any = None

    # -- what subclasses supply ----------------------------------------------------------------

    async def _generate(
        self, generator: Generator, inputs: Sequence[InputT], params: Sequence[GenerateParams]
    ) -> Sequence[ResultT | BaseException]:
        raise NotImplementedError

    def _make_record(
        self, input: InputT, result: ResultT | None, fields: dict[str, Any]
    ) -> RecordT:
        raise NotImplementedError

    def _failure_in(self, result: ResultT | BaseException) -> BaseException | None:
        """The exception an item failed with: the result itself, when it is one. A result may
        also be a partial one that failed (a chat failing after some rounds keeps them)."""
        return result if isinstance(result, BaseException) else None

    def _normalize_input(self, value: Any) -> InputT:
        raise NotImplementedError

    # -- building ------------------------------------------------------------------------------

    def _copy(self: SelfT) -> SelfT:
        clone = object.__new__(type(self))
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                setattr(clone, name, getattr(self, name))
        clone._metadata = dict(self._metadata)
        return clone

    def with_(self: SelfT, params: GenerateParams | None = None, **kwargs: Any) -> SelfT:
        """A new pipeline whose params are these, overridden by `params` and then `kwargs`.

        >>> import jib.testing
        >>> pipeline = jib.testing.EchoGenerator(model="echo").chat("hi")
        >>> pipeline.with_(temperature=0.1).params.temperature, pipeline.params.temperature
        (0.1, None)
        """
        clone = self._copy()
        clone.params = self.params.merge_with(params, GenerateParams(**kwargs) if kwargs else None)
        return clone

    def wrap(self: SelfT, wrapper: Wrapper) -> SelfT:
        """A new pipeline whose generator calls go through `wrapper` (the generator is unchanged).

        `wrapper` takes an async callable and returns one, e.g.
        `backoff.on_exception(backoff.expo, jib.errors.RETRYABLE_ERRORS, max_tries=3)`.
        """
        clone = self._copy()
        clone.generator = self.generator.wrap(wrapper)
        return clone

    def with_retries(
        self: SelfT,
        *,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        max_retry_wait: float | None = None,
    ) -> SelfT:
        """A new pipeline that retries failed requests this way (the generator is unchanged).

        Overrides the generator's `max_retries`, `retry_backoff` (seconds) and `max_retry_wait`
        (seconds) for this pipeline's runs, `run_over` included; limits stay shared with the
        generator. `with_retries(max_retries=0)` turns jib's retries off, e.g. to leave them
        to a `wrap()` of your own.

        Raises:
            TypeError: the generator sends no requests of its own (a local model).
        """
        from jib.generator.remote import RequestGenerator  # brings asyncio: load on use

        if not isinstance(self.generator, RequestGenerator):
            raise TypeError(
                f"{type(self.generator).__name__} sends no requests, so it has no retries to "
                "set; wrap() it with a retry decorator instead"
            )
        settings: dict[str, Any] = {
            "max_retries": max_retries,
            "retry_backoff": retry_backoff,
            "max_retry_wait": max_retry_wait,
        }
        self.generator.with_retries(**settings)  # validates now rather than at run time
        clone = self._copy()
        clone._retry = {**self._retry, **{k: v for k, v in settings.items() if v is not None}}
        return clone

    def with_response_cache(self: SelfT, cache: Any) -> SelfT:
        """A new pipeline whose requests go through jib's response cache `cache` (a
        `jib.storage.ResponseCache`, from `jib.storage.open_response_cache()`), overriding one
        set on the generator: each request is looked up first, by what decides its answer and
        its sample index (`run_many(3)` keeps three answers), and each successful answer is
        kept. Not the provider's prompt cache, which is `cache("latest")`.

        Raises:
            InvalidGeneratorError: the generator's answers cannot be cached (`fail!`).
        """
        from jib.errors import InvalidGeneratorError

        if cache is not None:
            refusal = self.generator.response_cache_refusal()
            if refusal is not None:
                raise InvalidGeneratorError(refusal)
        clone = self._copy()
        clone._response_cache = cache
        return clone

    def then(self: SelfT, callback: Callable[[RecordT], Any]) -> SelfT:
        """Run `callback(record)` on each successful record; a returned record replaces it.

        The callback may be sync or async. A returned pipeline is run and its record kept.
        Callbacks run concurrently across records, in order for one record; once a record has
        failed (a caught exception, or a returned pipeline that failed) later callbacks skip it.
        An exception `catch` does not cover cancels the other callbacks and propagates.
        """
        clone = self._copy()
        clone._thens = (*self._thens, callback)
        return clone

    def map(self: SelfT, callback: Callable[[list[RecordT]], Any]) -> SelfT:
        """Run `callback(records)` on the successful records of a run; it returns the new list."""
        clone = self._copy()
        clone._maps = (*self._maps, callback)
        return clone

    def watch(self: SelfT, callback: Callable[[list[RecordT]], Any]) -> SelfT:
        """Call `callback(records)` with every finished record of each run, failed ones too.

        Watchers run before the `on_failed` policy applies, so a store can record everything.
        A watcher that raises stops the run: its exception propagates and the records are not
        returned (watchers are where records get stored, so a failure there must not pass
        silently). Watchers after it are not called.
        """
        clone = self._copy()
        clone._watchers = (*self._watchers, callback)
        return clone

    def meta(self: SelfT, **metadata: Any) -> SelfT:
        """A new pipeline that adds `metadata` to every record it makes."""
        clone = self._copy()
        clone._metadata.update(metadata)
        return clone

    def catch(self: SelfT, *exception_types: type[BaseException]) -> SelfT:
        """Also record these exception types as failures (jib's own errors always are).

        Other exceptions propagate from `run*` whatever `on_failed` says: they are bugs.
        """
        for exception_type in exception_types:
            if not (isinstance(exception_type, type) and issubclass(exception_type, BaseException)):
                raise TypeError(f"catch() takes exception types, not {exception_type!r}")
        clone = self._copy()
        clone._catch = (*self._catch, *exception_types)
        return clone

    # -- running -------------------------------------------------------------------------------

    async def run(self, on_failed: OnFailed = "raise") -> RecordT:
        """Generate once and return the record.

        Args:
            on_failed: `"raise"` raises a failure; `"include"` returns the failed record.
        """
        if on_failed == "skip":
            raise ValueError("on_failed='skip' leaves nothing to return from run(); use 'include'")
        records = await self._run(self.generator, [self._input], None, on_failed)
        return records[0]

    async def run_many(self, n: int, on_failed: OnFailed = "raise") -> list[RecordT]:
        """Generate `n` times from the same input, in one batch call."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        return await self._run(self.generator, [self._input] * n, None, on_failed, samples=range(n))

    async def run_batch(
        self,
        many_inputs: Sequence[Any],
        many_params: Sequence[GenerateParams | None] | None = None,
        on_failed: OnFailed = "raise",
        *,
        samples: Sequence[int] | None = None,
    ) -> list[RecordT]:
        """Generate once for each input, in one batch call.

        Each input is appended to this pipeline's own input. `many_params`, when given, has one
        entry per input and overrides the pipeline's params for that input. `samples`, when
        given, is each input's sample index (default 0): with a response cache, the same
        request under another sample index gets an answer of its own.
        """
        if isinstance(many_inputs, str):
            raise TypeError(
                "run_batch takes a sequence of inputs, not one string; pass [text] for one input"
            )
        if many_params is not None and len(many_params) != len(many_inputs):
            raise ValueError(
                f"run_batch got {len(many_inputs)} inputs but {len(many_params)} params"
            )
        if samples is not None and len(samples) != len(many_inputs):
            raise ValueError(
                f"run_batch got {len(many_inputs)} inputs but {len(samples)} sample indexes"
            )
        inputs = self._inputs(many_inputs)
        return await self._run(self.generator, inputs, many_params, on_failed, samples=samples)

    async def run_over(
        self, *generators: Generator | str, on_failed: OnFailed = "raise"
    ) -> list[RecordT]:
        """Run this pipeline once on each generator (objects or identifiers), concurrently.

        Records come back in the order of `generators`. Identifiers are all parsed before
        anything runs, so a bad one raises `InvalidGeneratorError` whatever `on_failed` says.
        """
        built = []
        for generator in generators:
            if isinstance(generator, str):
                generator = get_generator(generator)
            for wrapper in self.generator._wrappers:
                generator = generator.wrap(wrapper)
            built.append(generator)
        batches = await gather_all([self._run(g, [self._input], None, on_failed) for g in built])
        return [record for batch in batches for record in batch]

    def __await__(self) -> PyGenerator[Any, None, RecordT]:
        return self.run().__await__()

    def _extend(self, input: InputT) -> InputT:
        raise NotImplementedError

    def _inputs(self, many_inputs: Sequence[Any]) -> list[InputT]:
        """Each of `run_batch`'s inputs, normalized and appended to this pipeline's input."""
        return [self._extend(self._normalize_input(item)) for item in many_inputs]

    def _record(
        self,
        generator: Generator,
        input: InputT,
        params: GenerateParams,
        result: ResultT | None,
        error: BaseException | None,
        batch_ms: float | None = None,
    ) -> RecordT:
        """The record of one item: `result` (its answer, or what it got to before failing),
        `error` (what it failed with), or both."""
        fields: dict[str, Any] = {
            "generator": generator,
            "params": params,
            "metadata": dict(self._metadata),
        }
        if result is not None:
            fields["stop_reason"] = getattr(result, "stop_reason", "unknown")
            fields["usage"] = getattr(result, "usage", None)
            extra = getattr(result, "extra", {})
            if isinstance(extra, dict) and SESSION_KEY in extra:
                extra = session_to_metadata(extra, fields["metadata"])
            fields["extra"] = extra
            fields["attempts"] = getattr(result, "attempts", None)
            fields["latency_ms"] = getattr(result, "latency_ms", None) or batch_ms
        if error is not None:
            fields["failed"] = True
            fields["error"] = error
            if result is None and isinstance(error, JibError):
                fields["attempts"] = error.attempts
        return self._make_record(input, result, fields)

    def _base_params(self, generator: Generator) -> GenerateParams:
        """`generator.params` overridden by this pipeline's: one object for as long as neither
        changes, so a run's records share it (and their identifier is written once per batch,
        see `BatchDicts`)."""
        merged = self._merged
        if merged is not None and merged.holds(generator.params, self.params):
            return merged.base
        base = generator.params.merge_with(self.params)
        self._merged = _MergedParams(generator.params, self.params, base)
        return base

    async def _run(
        self,
        generator: Generator,
        inputs: list[InputT],
        many_params: Sequence[GenerateParams | None] | None,
        on_failed: OnFailed,
        generate: Callable[..., Awaitable[Sequence[ResultT | BaseException]]] | None = None,
        samples: Sequence[int] | None = None,
    ) -> list[RecordT]:
        """Generate for `inputs` (with `generate` in place of `_generate` when given: a stream),
        turn results into records, apply callbacks, watchers and the `on_failed` policy."""
        if on_failed not in _ON_FAILED:
            raise ValueError(f"on_failed must be one of {_ON_FAILED}, not {on_failed!r}")
        if not inputs:
            return []
        sender = generator
        if self._retry:
            from jib.generator.remote import RequestGenerator

            if isinstance(generator, RequestGenerator):
                # Records keep the generator as given: retry settings are how it ran, not what.
                sender = generator.with_retries(**self._retry)
        base = self._base_params(generator)
        if many_params is None:
            params_list = [base] * len(inputs)
        else:
            params_list = [base.merge_with(p) if p is not None else base for p in many_params]
        cached = None
        cache = self._response_cache or generator._runtime["_response_cache"]
        if cache is not None and generator.response_cache_refusal() is None:
            cached = cache.sender(sender, _sample_indexes(params_list, samples))
            sender = cached

        started = time.perf_counter()
        try:
            work = (generate or self._generate)(sender, inputs, params_list)
            if SESSION_KEY in self._metadata or current_session() is not None:
                with using_session(self._metadata):  # a continued chat's server-side conversation
                    results = await work
            else:  # no session to set, none to hide: the common case, without a context manager
                results = await work
        except self._catch as exc:
            results = [exc] * len(inputs)
        batch_ms = (time.perf_counter() - started) * 1000
        if len(results) != len(inputs):
            raise RuntimeError(
                f"{type(generator).__name__} returned {len(results)} results for a batch of "
                f"{len(inputs)}; a generator must return one result per item"
            )

        records: list[RecordT] = []
        for item, params, result in zip(inputs, params_list, results, strict=True):
            failure = self._failure_in(result)
            if failure is not None and not isinstance(failure, self._catch):
                raise failure
            if isinstance(result, BaseException):
                records.append(self._record(generator, item, params, None, result))
            else:
                records.append(self._record(generator, item, params, result, failure, batch_ms))
        if cached is not None:
            cached.settle(records)
            await cached.finish()

        if self._thens or self._maps:
            records = await self._apply_callbacks(records, generator, inputs, params_list)
        for watcher in self._watchers:
            await _resolve(watcher(list(records)))

        if on_failed == "raise":
            for record in records:
                error = getattr(record, "error", None)
                if error is not None:
                    raise error
        if on_failed == "skip":
            records = [record for record in records if not getattr(record, "failed", False)]
        return records

    async def _apply_callbacks(
        self,
        records: list[RecordT],
        generator: Generator,
        inputs: list[InputT],
        params_list: list[GenerateParams],
    ) -> list[RecordT]:
        async def then_one(index: int, record: RecordT) -> RecordT:
            try:
                for callback in self._thens:
                    if getattr(record, "failed", False):
                        break
                    outcome: Any = await _resolve(callback(record))
                    if isinstance(outcome, Pipeline):
                        outcome = await outcome.run(on_failed="include")
                    if outcome is not None:
                        record = outcome
                return record
            except self._catch as exc:
                return self._record(generator, inputs[index], params_list[index], None, exc)

        if self._thens:
            records = await gather_all([then_one(i, r) for i, r in enumerate(records)])
        for callback in self._maps:
            good = [r for r in records if not getattr(r, "failed", False)]
            bad = [r for r in records if getattr(r, "failed", False)]
            mapped: Any = await _resolve(callback(good))
            if not isinstance(mapped, list):
                raise TypeError(f"a map() callback must return a list, not {type(mapped).__name__}")
            records = [*mapped, *bad]
        return records


class _MergedParams:
    """Two params objects, what their fields held when merged, and the merge."""

    __slots__ = ("_first", "_first_fields", "_second", "_second_fields", "base")

    def __init__(self, first: GenerateParams, second: GenerateParams, base: GenerateParams):
        self._first, self._first_fields = first, dict(first.__dict__)
        self._second, self._second_fields = second, dict(second.__dict__)
        self.base = base

    def holds(self, first: GenerateParams, second: GenerateParams) -> bool:
        """Whether merging `first` and `second` gives `base` still (the same objects, no field
        assigned since)."""
        return (
            first is self._first
            and second is self._second
            and first.__dict__ == self._first_fields
            and second.__dict__ == self._second_fields
        )
