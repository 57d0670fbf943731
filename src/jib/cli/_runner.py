"""The engine of `jib run`: every prompt (× `repeat` samples) against every generator, stored as
it goes.

Each generator gets one pipeline, `generator.chat().with_(params)`, and `run_batch` is called on
chunks of the dataset by a few worker tasks, so at most `concurrency` prompts are in flight,
progress moves chunk by chunk, and memory stays flat (the file is streamed; finished chats are
stored and dropped). Finished chunks go to a `BatchWriter`, which stores them in the background,
many chunks to a transaction, while the workers go on; a killed run leaves whole chats only.

Each stored chat carries its prompt's id and sample index (metadata `prompt_id`, `sample_index`)
and the line's own metadata, its latency (measured around its chunk when the generator does not
report one) and its cost when the price is known. With a JSON Schema (`--schema`) each answer is
validated into `chat.output` (`jib.cli._schema`); tool calls a model makes (`--tools`) are
recorded in its answer, never run. `--resume` plans from what the run holds
(`ResumeIndex`); a generator whose requests keep failing with authentication or bad-request errors
is stopped (`stop_after` in a row) and `max_cost` stops the whole run once that much is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from jib import errors
from jib.chat import Chat
from jib.cli._progress import GeneratorStats, Reporter
from jib.cli._prompts import Prompt, PromptsFile
from jib.cli._schema import SCHEMA_ERROR, AnswerSchema
from jib.cli._writer import BatchWriter
from jib.cost import Prices
from jib.errors import InvalidGeneratorError
from jib.generator.base import Generator
from jib.messages import Message
from jib.params import GenerateParams
from jib.storage import ChatStore, ResponseCache, StoredResult, StoreError, input_key
from jib.storage._response_answers import NOTE as CACHE_NOTE
from jib.storage._rows import PROMPT_ID, SAMPLE_INDEX

__all__ = ["ResumeIndex", "RunPlan", "chunking", "execute", "plan_run", "stops_a_generator"]


def chunking(concurrency: int, batch_size: int | None) -> tuple[int, int]:
    """(prompts per `run_batch` call, worker tasks) so that at most `concurrency` are in flight.

    By default a chunk is a quarter of the concurrency (at least 1), so four chunks overlap and
    one slow item does not hold the rest back; `batch_size` sets the chunk size instead.
    """
    size = batch_size if batch_size is not None else max(1, math.ceil(concurrency / 4))
    size = max(1, min(size, concurrency))
    return size, max(1, concurrency // size)


def retryable(error_type: str | None) -> bool:
    """Whether a stored failure's error (by class name) is worth trying again as it is."""
    cls = getattr(errors, error_type or "", None)
    return isinstance(cls, type) and issubclass(cls, errors.ProviderError) and cls.retryable


def stops_a_generator(error: BaseException | None) -> bool:
    """Whether `error` says the generator itself is wrong (key, model, request shape).

    A prompt that is too long fails alone, so `ContextLengthError` does not count.
    """
    return isinstance(
        error, (errors.AuthenticationError, errors.BadRequestError)
    ) and not isinstance(error, errors.ContextLengthError)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One request of the run: a prompt's sample, what is sent, and the failure it replaces."""

    prompt: Prompt
    sample: int
    messages: list[Message]
    replacing: str | None = None
    refused: errors.JibError | None = None
    """Why the prompt may not go to this generator (its params, attachments or URLs): recorded
    as its failure."""


class ResumeIndex:
    """What a run already holds, to decide what `--resume` runs again.

    A (generator, prompt id, sample) the run holds is skipped when it succeeded, or failed with
    an error that is not retryable (unless `retry_failed`); a failure with a retryable error
    (rate limit, timeout, server or connection error) runs again and its new chat replaces the
    stored one, as does a prompt whose text changed since. Records stored without a prompt id
    (by an older jib) are matched by generator and conversation, as many times as stored.
    """

    def __init__(self, results: Sequence[StoredResult], *, retry_failed: bool) -> None:
        self.retry_failed = retry_failed
        self._by_key: dict[tuple[str | None, str, int], StoredResult] = {}
        self._legacy: Counter[tuple[str | None, str]] = Counter()
        for result in results:
            if result.prompt_id is None:
                self._legacy[(result.generator_id, result.input_key)] += 1
            else:
                key = (result.generator_id, result.prompt_id, result.sample_index or 0)
                self._by_key[key] = result

    def __bool__(self) -> bool:
        return bool(self._by_key or self._legacy)

    def legacy(self) -> Counter[tuple[str | None, str]]:
        """A fresh copy of the counts of records stored without a prompt id."""
        return Counter(self._legacy)

    def stored(self, generator_id: str | None, prompt_id: str, sample: int) -> StoredResult | None:
        """The stored record of this generator, prompt and sample, if any."""
        return self._by_key.get((generator_id, prompt_id, sample))


@dataclass(slots=True)
class RunPlan:
    """What a run will do: the generators, their prompts, and how much was already stored."""

    generators: list[Generator]
    prompts: PromptsFile
    system: list[Message]
    params: GenerateParams
    run: str
    stats: list[GeneratorStats]
    resume: ResumeIndex | None = None
    repeat: int = 1
    tags: list[str] = field(default_factory=list)
    prices: Prices = field(default_factory=Prices)
    stop_after: int = 5
    max_cost: float | None = None
    schema: AnswerSchema | None = None
    """The JSON Schema every answer is validated against, if any."""
    halted: str | None = None
    """Why the whole run stopped early (`max_cost` reached), if it did."""
    response_cache: ResponseCache | None = None
    """jib's response cache (`--cache`), if the run uses it."""

    @property
    def spent(self) -> float:
        """The known cost of what this run has done so far, in US dollars."""
        return sum(s.cost for s in self.stats)


def _identifier(generator: Generator, params: GenerateParams) -> str | None:
    try:
        return generator.to_identifier(params)
    except InvalidGeneratorError:
        return None


def _sent(plan: RunPlan, prompt: Prompt) -> list[Message]:
    """What is sent for `prompt`: `--system` first, unless the prompt has a system message."""
    if prompt.has_system or not plan.system:
        return list(prompt.messages)
    return [*plan.system, *prompt.messages]


def _work(plan: RunPlan, index: int, stats: GeneratorStats | None = None) -> Iterator[WorkItem]:
    """The requests generator `index` has to make, counting what is skipped into `stats`."""
    generator = plan.generators[index]
    shared_identifier = _identifier(generator, plan.params)
    resume = plan.resume
    legacy = resume.legacy() if resume else Counter()
    for prompt in plan.prompts:
        sent = _sent(plan, prompt)
        refused = plan.prompts.refusal(prompt, generator)
        if not resume:
            for sample in range(plan.repeat):
                yield WorkItem(prompt, sample, sent, refused=refused)
            continue
        identifier = shared_identifier
        if prompt.params is not None:
            identifier = _identifier(generator, plan.params.merge_with(prompt.params))
        key = input_key([message.to_dict() for message in sent])
        for sample in range(plan.repeat):
            stored = resume.stored(identifier, prompt.id, sample)
            if stored is None:
                if legacy[(identifier, key)] > 0:
                    legacy[(identifier, key)] -= 1
                    if stats:
                        stats.skipped += 1
                    continue
                yield WorkItem(prompt, sample, sent, refused=refused)
            elif stored.input_key != key or (
                stored.failed and (resume.retry_failed or retryable(stored.error_type))
            ):
                if stats and stored.failed:
                    stats.retrying += 1
                yield WorkItem(prompt, sample, sent, replacing=stored.id, refused=refused)
            elif stats:
                stats.skipped += 1
                stats.kept_failed += stored.failed


def plan_run(
    generators: Sequence[Generator],
    prompts: PromptsFile,
    *,
    system: list[Message],
    params: GenerateParams,
    run: str,
    resume: ResumeIndex | None = None,
    repeat: int = 1,
    tags: Sequence[str] = (),
    prices: Prices | None = None,
    stop_after: int = 5,
    max_cost: float | None = None,
    schema: AnswerSchema | None = None,
) -> RunPlan:
    """Count what each generator has to do (reading the file once per generator if resuming)."""
    plan = RunPlan(
        generators=list(generators),
        prompts=prompts,
        system=system,
        params=params,
        run=run,
        stats=[],
        resume=resume,
        repeat=repeat,
        tags=list(tags),
        prices=prices or Prices(),
        stop_after=stop_after,
        max_cost=max_cost,
        schema=schema,
    )
    for index, generator in enumerate(plan.generators):
        stats = GeneratorStats(_identifier(generator, GenerateParams()) or generator.model, 0)
        if resume:
            stats.total = sum(1 for _ in _work(plan, index, stats))
        else:
            stats.total = prompts.count * repeat
        plan.stats.append(stats)
    return plan


def _chunks(plan: RunPlan, size: int) -> Iterator[tuple[int, list[WorkItem]]]:
    """Chunks of work, generator by generator; none for a stopped generator or a halted run."""
    for index in range(len(plan.generators)):
        chunk: list[WorkItem] = []
        for item in _work(plan, index):
            if plan.halted or plan.stats[index].stopped:
                chunk = []  # not run, so `--resume` runs them
                break
            chunk.append(item)
            if len(chunk) >= size:
                yield index, chunk
                chunk = []
        if chunk:
            yield index, chunk
        if plan.halted:
            return


def _annotate(record: Chat, item: WorkItem, chunk_ms: float, prices: Prices) -> None:
    """Put the prompt's id, sample and metadata on `record`, and its latency and cost."""
    record.metadata = {
        PROMPT_ID: item.prompt.id,
        SAMPLE_INDEX: item.sample,
        **item.prompt.metadata,
        **record.metadata,
    }
    if record.latency_ms is None:
        record.latency_ms = chunk_ms
    if record.cost_usd is None and not record.failed and record.generator is not None:
        if CACHE_NOTE in record.extra:  # answered from the response cache: free
            record.cost_usd = 0.0
        else:
            record.cost_usd = prices.cost(record.generator, record.usage)


def _tally(plan: RunPlan, index: int, records: list[Chat], reporter: Reporter) -> None:
    """Count `records` into generator `index`'s stats; stop it, or the run, when it is time."""
    stats = plan.stats[index]
    for record in records:
        if record.failed:
            stats.failed += 1
            if stats.first_error is None:
                stats.first_error = f"{type(record.error).__name__}: {record.error}"
            stats.failures_in_a_row = (
                stats.failures_in_a_row + 1 if stops_a_generator(record.error) else 0
            )
        else:
            stats.ok += 1
            stats.failures_in_a_row = 0
            if plan.response_cache is not None:
                _count_cached(plan, stats, record)
            if record.latency_ms is not None:
                stats.latencies.append(record.latency_ms)
            stats.called += bool(record.generated and record.generated[-1].tool_calls)
            stats.valid += plan.schema is not None and SCHEMA_ERROR not in record.extra
        if record.usage is not None:
            stats.input_tokens += record.usage.input_tokens
            stats.output_tokens += record.usage.output_tokens
        if record.cost_usd is not None:
            stats.cost += record.cost_usd
            stats.priced += 1
        if plan.stop_after and stats.failures_in_a_row >= plan.stop_after and not stats.stopped:
            stats.stopped = (
                f"{stats.label} stopped after {stats.failures_in_a_row} failures in a row with "
                f"{type(record.error).__name__}: {record.error}"
            )
            reporter.note(f"{stats.stopped} (the other generators go on)")
    stats.finished = time.monotonic()
    if plan.max_cost is not None and plan.halted is None and plan.spent >= plan.max_cost:
        plan.halted = f"--max-cost {plan.max_cost:g} reached (${plan.spent:.4f} spent)"
        reporter.note(f"{plan.halted}: no new requests are sent")


def _count_cached(plan: RunPlan, stats: GeneratorStats, record: Chat) -> None:
    """Count a successful chat as a response-cache hit (and what it saved) or a miss."""
    if CACHE_NOTE not in record.extra:
        stats.cache_misses += 1
        return
    stats.cache_hits += 1
    if record.generator is not None and record.usage is not None:
        stats.cache_saved += plan.prices.cost(record.generator, record.usage) or 0.0


def _with_refused(
    plan: RunPlan, index: int, chunk: list[WorkItem], answered: list[Chat]
) -> list[Chat]:
    """The chunk's records in order: the answers, and a failed chat for each refused item
    (nothing was sent for it)."""
    if all(item.refused is None for item in chunk):
        return answered
    generator = plan.generators[index]
    base = generator.params.merge_with(plan.params)
    answers = iter(answered)
    return [
        next(answers)
        if item.refused is None
        else Chat(
            messages=list(item.messages),
            generator=generator,
            params=base.merge_with(item.prompt.params),
            failed=True,
            error=item.refused,
            latency_ms=0.0,
        )
        for item in chunk
    ]


async def execute(
    plan: RunPlan,
    store: ChatStore,
    reporter: Reporter,
    *,
    concurrency: int,
    batch_size: int | None = None,
) -> None:
    """Run the plan, storing every finished chat and updating `plan.stats` and the reporter."""
    size, workers = chunking(concurrency, batch_size)
    pipelines = [
        generator.chat()
        .with_(plan.params)
        .catch(Exception)  # a batch job records every failure and goes on
        for generator in plan.generators
    ]
    cache = plan.response_cache
    if cache is not None:
        pipelines = [
            pipeline.with_response_cache(cache)
            if pipeline.generator.response_cache_refusal() is None
            else pipeline
            for pipeline in pipelines
        ]
    work = _chunks(plan, size)

    async def worker() -> None:
        for index, chunk in work:
            stats = plan.stats[index]
            if stats.started is None:
                stats.started = time.monotonic()
            sent = [item for item in chunk if item.refused is None]
            many_params = (
                [item.prompt.params for item in sent]
                if any(item.prompt.params for item in sent)
                else None
            )
            started = time.perf_counter()
            answered = (
                await pipelines[index].run_batch(
                    [item.messages for item in sent],
                    many_params,
                    on_failed="include",
                    samples=[item.sample for item in sent] if plan.repeat > 1 else None,
                )
                if sent
                else []
            )
            chunk_ms = (time.perf_counter() - started) * 1000
            records = _with_refused(plan, index, chunk, answered)
            for item, record in zip(chunk, records, strict=True):
                _annotate(record, item, chunk_ms, plan.prices)
                if plan.schema is not None and not record.failed:
                    plan.schema.apply(record)
            _tally(plan, index, records, reporter)
            reporter.update(index)
            await writer.put(records, replacing=[i.replacing for i in chunk if i.replacing])

    writer = BatchWriter(store, run=plan.run, tags=plan.tags)
    reporter.start(plan.stats)
    try:
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            # Interrupted, or a worker failed: still store what is finished (unless storing is
            # what failed).
            with contextlib.suppress(Exception):
                await writer.close()
            raise
        await writer.close()
        if cache is not None:
            try:
                await cache.aflush()
            except StoreError as exc:  # the chats are made and stored: `close()` raises it
                cache.failed(exc)
    finally:
        writer.abandon()
        reporter.stop()
        for generator in plan.generators:
            generator.unload()
