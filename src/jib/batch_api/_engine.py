"""The engine: one generator's requests through its provider's batch API.

`BatchAPIJob.run()` splits the requests into batches within the provider's limits (requests
and bytes), submits each (writing it to the journal at once, before waiting), polls each with
backoff until it ends, streams its results and joins them to their requests **by custom id**
(results come in any order), and hands each answer or failure to `on_result` as it arrives.
A request that failed in a way worth trying again (a retryable error: rate limit, server error,
timeout), that its batch did not run (expired, canceled) or whose result line could not be read
is submitted again alone, in a new batch of the retried requests (or sent directly with
`fallback`), up to `max_attempts` in all; never its whole batch. A batch the provider refuses
when it is submitted (a bad request: a request too large, one it cannot read) is split in halves,
each submitted on its own, down to single requests: a single request refused fails alone, with
the provider's message, and the rest of the run goes on (at most `MAX_SPLITS` splits a job; past
them a refused batch's requests fail together). A batch accepted and then failed as a whole
(OpenAI's `failed`: its input did not pass the provider's checks) is split the same way.
Batches of the same generator and run that the journal holds uncollected are polled, not
submitted again: that is what makes a resumed run pay once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from jib.batch_api._journal import Journal, JournalEntry
from jib.errors import BadRequestError, JibError, ProviderError, ProviderTimeoutError
from jib.generator._batch_api import (
    BatchClient,
    BatchItem,
    BatchLimits,
    BatchState,
    ItemResult,
    Submitted,
)
from jib.generator.base import Generator
from jib.messages import GeneratedMessage, Message
from jib.params import GenerateParams

__all__ = [
    "MAX_SPLITS",
    "BatchAPIJob",
    "BatchAPISettings",
    "Delivery",
    "Request",
    "next_poll_delay",
]

logger = logging.getLogger("jib.batch_api")


@dataclass(frozen=True, slots=True)
class Request:
    """One request to get answered: its custom id, messages and (merged) params."""

    custom_id: str
    messages: Sequence[Message]
    params: GenerateParams


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a result came: the provider batch (or none: sent directly), when that batch was
    submitted, and how many attempts the request took."""

    provider: str
    batch_id: str | None
    submitted_at: float
    """`time.time()` when the batch was submitted (or the direct request sent)."""
    attempts: int


OnResult = Callable[[Request, "GeneratedMessage | BaseException", Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BatchAPISettings:
    """How a run uses a batch API.

    Attributes:
        max_requests: the most requests per batch; `None`: the provider's (`DEFAULT_LIMITS`).
        max_bytes: the most bytes of input per batch; `None`: the provider's.
        poll_seconds: the first wait between two polls of a batch; it grows by half each time,
            up to `max_poll_seconds`.
        max_attempts: attempts per request (the first included) before its failure is kept.
        fallback: send retried requests directly (the generator's normal path) instead of in a
            new batch.
        label: what a submitted batch's metadata names (a run).
    """

    max_requests: int | None = None
    max_bytes: int | None = None
    poll_seconds: float = 10.0
    max_poll_seconds: float = 300.0
    max_attempts: int = 3
    fallback: bool = False
    label: str = "jib"


DEFAULT_LIMITS = {
    "openai": BatchLimits(50_000, 200 * 1000 * 1000),
    "anthropic": BatchLimits(100_000, 256 * 1000 * 1000),
}
"""Each provider's own limits per batch (requests, bytes of input)."""

MAX_SPLITS = 32
"""How often one job splits a batch the provider refused (at submission, or failed as a whole
after it), to find the requests it refuses: one among 50,000 takes 16 splits (each a batch
refused, then two made). Past this, a refused batch's requests fail together with its
refusal."""

_MAX_POLL_FAILURES = 10
_MAX_SUBMIT_TRIES = 5


@dataclass(slots=True)
class _Batch:
    entry: JournalEntry
    ids: set[str]
    submitted_at: float
    attempts: dict[str, int] = field(default_factory=dict)


class BatchAPIJob:
    """One generator's requests through its batch API (see the module docstring)."""

    def __init__(
        self,
        generator: Generator,
        client: BatchClient,
        requests: Sequence[Request],
        *,
        generator_id: str,
        run: str | None,
        journal: Journal,
        on_result: OnResult,
        settings: BatchAPISettings,
    ) -> None:
        self.generator = generator
        self.client = client
        self.generator_id = generator_id
        self.run_name = run
        self.journal = journal
        self.on_result = on_result
        self.settings = settings
        default = DEFAULT_LIMITS.get(client.provider, BatchLimits())
        self.limits = BatchLimits(
            settings.max_requests or default.max_requests,
            settings.max_bytes or default.max_bytes,
        )
        self.pending: dict[str, Request] = {r.custom_id: r for r in requests}
        self.submitted_batches = 0
        self.resumed_batches = 0
        self.splits = 0
        """Refused batches split so far (at most `MAX_SPLITS`)."""
        self._lines: dict[str, bytes] = {}
        self._group: _Group | None = None

    async def run(self) -> None:
        """Submit, poll and collect until every request has its result."""
        try:
            async with _Group() as group:
                self._group = group
                waiting = set(self.pending)
                entries = await asyncio.to_thread(
                    self.journal.uncollected, self.generator_id, self.run_name
                )
                # The newest batch holding a request is the one it waits on (an older one
                # failed it, and was not marked collected before the crash).
                newest_first = sorted(entries, key=lambda e: e.created_at, reverse=True)
                # How many batches older than the one at hand held each request (its earlier
                # attempts): every batch's ids, less each batch's own as the walk passes it.
                earlier = Counter(c for entry in entries for c in entry.custom_ids)
                for entry in newest_first:
                    earlier.subtract(entry.custom_ids)
                    ids = {c for c in entry.custom_ids if c in waiting}
                    waiting -= ids
                    if not ids:  # every answer it holds is kept
                        await asyncio.to_thread(self.journal.collected, entry.key)
                        continue
                    self.resumed_batches += 1
                    attempts = {c: earlier[c] for c in ids if earlier[c] > 0}
                    batch = _Batch(entry, ids, entry.created_at.timestamp(), attempts)
                    group.create_task(self._follow(batch))
                sendable = await self._sendable(
                    [self.pending[c] for c in self.pending if c in waiting]
                )
                for chunk in self._split(sendable):
                    await self._submit_and_follow(chunk, {})
        finally:
            self._group = None
            await self.client.aclose()

    # -- submitting ---------------------------------------------------------------------------

    async def _sendable(self, requests: Sequence[Request]) -> list[Request]:
        """`requests` but those that cannot go as they are (a part or param the provider would
        not carry, a body that cannot be written): each of those fails alone, now."""
        from jib.generator.remote import RequestGenerator

        generator = self.generator
        kept: list[Request] = []
        for request in requests:
            try:
                if isinstance(generator, RequestGenerator):
                    generator.check_request(request.messages, request.params)
                self._line(request)
            except JibError as exc:
                self.pending.pop(request.custom_id, None)
                delivery = Delivery(self.client.provider, None, time.time(), 0)
                await self.on_result(request, exc, delivery)
            else:
                kept.append(request)
        return kept

    def _line(self, request: Request) -> bytes:
        line = self._lines.get(request.custom_id)
        if line is None:
            line = self._lines[request.custom_id] = self.client.line(
                BatchItem(request.custom_id, request.messages, request.params)
            )
        return line

    def _split(self, requests: Sequence[Request]) -> list[list[Request]]:
        """`requests` in batches within the limits (a request too large for any batch goes
        alone, for the provider to refuse)."""
        chunks: list[list[Request]] = []
        chunk: list[Request] = []
        envelope = size = self.client.envelope_bytes
        most_requests, most_bytes = self.limits.max_requests, self.limits.max_bytes
        for request in requests:
            length = len(self._line(request)) + 1
            if chunk and (len(chunk) >= most_requests or size + length > most_bytes):
                chunks.append(chunk)
                chunk, size = [], envelope
            chunk.append(request)
            size += length
        if chunk:
            chunks.append(chunk)
        return chunks

    async def _submit(self, chunk: Sequence[Request], attempts: dict[str, int]) -> list[_Batch]:
        """Submit `chunk` as one batch, or, when the provider refuses it (`_refusal`), its
        halves on their own, down to single requests (see the module docstring); the batches
        made, each written to the journal. A request refused alone fails with the refusal."""
        batches: list[_Batch] = []
        parts = [list(chunk)]
        while parts:
            part = parts.pop()
            try:
                submitted = await self._create(part)
            except ProviderError as exc:
                if not _refusal(exc):
                    raise
                what = f"refused a batch of {len(part)} requests"
                if self._may_split(part, what, f"HTTP {exc.status_code}"):
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]  # the first half first
                    continue
                await self._refused(part, exc, attempts)
                continue
            batches.append(await self._written(part, submitted, attempts))
        return batches

    def _may_split(self, part: Sequence[Request], what: str, why: object) -> bool:
        """Whether a batch the provider refused (`what` it did, `why`) is split in halves: it
        holds several requests and the job has split fewer than `MAX_SPLITS` times (this one
        is counted, and said)."""
        if len(part) < 2 or self.splits >= MAX_SPLITS:
            return False
        self.splits += 1
        logger.warning(
            "%s %s (%s); its halves are submitted on their own", self.client.provider, what, why
        )
        return True

    async def _submit_and_follow(self, chunk: Sequence[Request], attempts: dict[str, int]) -> None:
        """`_submit` `chunk`, then follow each batch made in a task of the job's group."""
        assert self._group is not None  # set while the job runs
        for batch in await self._submit(chunk, attempts):
            self._group.create_task(self._follow(batch))

    async def _create(self, chunk: Sequence[Request]) -> Submitted:
        """`client.submit`, tried again on a rate limit, server error or broken connection."""
        lines = [self._line(r) for r in chunk]
        delay = self.settings.poll_seconds
        tried = 0
        while True:
            tried += 1
            try:
                return await self.client.submit(lines, label=self.settings.label)
            except ProviderError as exc:
                if not exc.retryable or tried >= _MAX_SUBMIT_TRIES:
                    raise
                await asyncio.sleep(max(delay, exc.retry_after or 0))
                delay = min(delay * 2, self.settings.max_poll_seconds)

    async def _refused(
        self, part: Sequence[Request], refusal: ProviderError, attempts: dict[str, int]
    ) -> None:
        """Fail the requests of a refused batch that is not split: one request, with the
        provider's refusal; several (the job split `MAX_SPLITS` times), saying so."""
        error: ProviderError = refusal
        if len(part) > 1:
            error = BadRequestError(
                f"the provider refused a batch of {len(part)} requests holding this one, and "
                f"this generator's refused batches were split {MAX_SPLITS} times already in "
                f"this run: {refusal.message}",
                status_code=refusal.status_code,
                provider=refusal.provider,
            )
            error.__cause__ = refusal
        for request in part:
            self.pending.pop(request.custom_id, None)
            self._lines.pop(request.custom_id, None)
            tries = attempts.get(request.custom_id, 0) + 1
            delivery = Delivery(self.client.provider, None, time.time(), tries)
            await self.on_result(request, error, delivery)

    async def _written(
        self, chunk: Sequence[Request], submitted: Submitted, attempts: dict[str, int]
    ) -> _Batch:
        """The batch `submitted` holding `chunk`, written to the journal."""
        entry = JournalEntry(
            key=os.urandom(16).hex(),
            run=self.run_name,
            generator_id=self.generator_id,
            provider=self.client.provider,
            endpoint=self.client.endpoint,
            batch_id=submitted.batch_id,
            input_file_id=submitted.input_file_id,
            custom_ids=[r.custom_id for r in chunk],
        )
        # Written (committed) before anything waits on the batch.
        await asyncio.to_thread(self.journal.submitted, entry)
        self.submitted_batches += 1
        logger.info("submitted batch %s (%d requests)", submitted.batch_id, len(chunk))
        return _Batch(entry, {r.custom_id for r in chunk}, time.time(), attempts)

    # -- following one batch --------------------------------------------------------------------

    async def _follow(self, batch: _Batch) -> None:
        state = await self._wait(batch)
        if state.phase == "failed" and await self._split_failed(batch, state):
            return
        retry = await self._collect(batch, state)
        await asyncio.to_thread(self.journal.collected, batch.entry.key)
        if not retry:
            return
        requests = [self.pending[c] for c in retry]
        if self.settings.fallback:
            await self._direct(requests, batch.attempts)
            return
        await self._submit_and_follow(requests, {c: batch.attempts.get(c, 1) for c in retry})

    async def _split_failed(self, batch: _Batch, state: BatchState) -> bool:
        """A batch accepted and then failed as a whole (its input did not pass the provider's
        checks: one bad request, or more than the account may queue): its halves are submitted
        on their own, as a refused batch's are (`_submit`), when it holds several requests and
        the job may still split; whether it was. None of its requests ran, so none counts an
        attempt."""
        requests = [
            self.pending[c] for c in batch.entry.custom_ids if c in batch.ids and c in self.pending
        ]
        what = f"failed batch {batch.entry.batch_id} of {len(requests)} requests as a whole"
        if not self._may_split(requests, what, state.message or state.status):
            return False
        await asyncio.to_thread(self.journal.collected, batch.entry.key)
        attempts = {
            r.custom_id: batch.attempts[r.custom_id]
            for r in requests
            if r.custom_id in batch.attempts
        }
        half = len(requests) // 2
        for part in (requests[:half], requests[half:]):
            await self._submit_and_follow(part, attempts)
        return True

    async def _wait(self, batch: _Batch) -> BatchState:
        delay = self.settings.poll_seconds
        failures = 0
        last = batch.entry.status
        while True:
            state: BatchState | None
            try:
                state = await self.client.state(batch.entry.batch_id)
            except ProviderError as exc:
                failures += 1
                if not exc.retryable or failures >= _MAX_POLL_FAILURES:
                    raise
                state = None
            if state is not None:
                failures = 0
                if state.status != last:
                    last = state.status
                    await asyncio.to_thread(self.journal.update, batch.entry.key, state.status)
                if state.phase != "in_progress":
                    return state
            await asyncio.sleep(delay)
            delay = next_poll_delay(delay, self.settings.max_poll_seconds)

    async def _collect(self, batch: _Batch, state: BatchState) -> list[str]:
        """Hand over the batch's results; the custom ids to try again."""
        unseen = set(batch.ids)
        retry: list[str] = []
        if state.phase == "failed":  # one request, or the job may split no more
            split = (
                f" (this generator's failed batches were split {MAX_SPLITS} times already in "
                "this run)"
                if len(unseen) > 1
                else ""
            )
            error = BadRequestError(
                f"the provider refused batch {batch.entry.batch_id}: "
                f"{state.message or state.status}{split}",
                provider=self.client.provider,
            )
            for custom_id in sorted(unseen):
                await self._deliver(batch, custom_id, error)
            return []
        delay = self.settings.poll_seconds
        for tried in range(1, _MAX_POLL_FAILURES + 1):
            try:
                # Closed here, on this task, however the loop ends (its connection with it).
                async with contextlib.aclosing(self.client.results(state)) as results:
                    async for result in results:
                        await self._take(batch, state, result, unseen, retry)
                break
            except ProviderError as exc:
                # A download cut short is read again from the start: what was taken is skipped.
                if not exc.retryable or tried == _MAX_POLL_FAILURES:
                    raise
                await asyncio.sleep(delay)
                delay = next_poll_delay(delay, self.settings.max_poll_seconds)
        for custom_id in sorted(unseen):  # no result at all: not run
            if custom_id not in self.pending:
                continue
            attempts = batch.attempts.get(custom_id, 0) + 1
            batch.attempts[custom_id] = attempts
            if attempts < self.settings.max_attempts:
                retry.append(custom_id)
            else:
                await self._deliver(batch, custom_id, _expired(batch, state))
        return retry

    async def _take(
        self,
        batch: _Batch,
        state: BatchState,
        result: ItemResult,
        unseen: set[str],
        retry: list[str],
    ) -> None:
        """One result of the batch: handed over, or marked to try again."""
        custom_id = result.custom_id
        if custom_id not in unseen or custom_id not in self.pending:
            return  # not this batch's, or already taken
        unseen.discard(custom_id)
        attempts = batch.attempts.get(custom_id, 0) + 1
        batch.attempts[custom_id] = attempts
        failure = result.error
        again = result.expired or (isinstance(failure, ProviderError) and failure.retryable)
        if result.answer is not None:
            await self._deliver(batch, custom_id, result.answer)
        elif again and attempts < self.settings.max_attempts:
            retry.append(custom_id)
        else:
            await self._deliver(batch, custom_id, failure or _expired(batch, state))

    async def _deliver(
        self, batch: _Batch, custom_id: str, result: GeneratedMessage | BaseException
    ) -> None:
        request = self.pending.pop(custom_id)
        self._lines.pop(custom_id, None)  # done: its serialized body is not needed again
        delivery = Delivery(
            self.client.provider,
            batch.entry.batch_id,
            batch.submitted_at,
            batch.attempts.get(custom_id, 1),
        )
        await self.on_result(request, result, delivery)

    async def _direct(self, requests: Sequence[Request], attempts: dict[str, int]) -> None:
        """Send `requests` through the generator itself (`fallback`)."""
        started = time.time()
        results = await self.generator.generate_messages(
            [list(r.messages) for r in requests], [r.params for r in requests]
        )
        for request, result in zip(requests, results, strict=True):
            self.pending.pop(request.custom_id, None)
            self._lines.pop(request.custom_id, None)
            delivery = Delivery(
                self.client.provider, None, started, attempts.get(request.custom_id, 1) + 1
            )
            await self.on_result(request, result, delivery)


def next_poll_delay(delay: float, most: float) -> float:
    """The wait before the next poll of a batch after waiting `delay`: half as long again,
    at most `most` (or `delay`, when that is already longer)."""
    return min(delay * 1.5, max(most, delay))


def _refusal(exc: ProviderError) -> bool:
    """Whether `exc`, answering a batch's submission, refuses what the batch holds (a bad
    request, a request too large), not where it went: a 404 (a wrong URL) stops the run."""
    return isinstance(exc, BadRequestError) and exc.status_code != 404


def _expired(batch: _Batch, state: BatchState) -> JibError:
    return ProviderTimeoutError(
        f"batch {batch.entry.batch_id} ended ({state.status}) with no result for this request "
        "(not run, or its result line could not be read)",
        provider=batch.entry.provider,
    )


class _Group:
    """Tasks awaited on exit; all cancelled when one fails (its exception raised as it is, not
    in an exception group) or the block does."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> _Group:
        return self

    def create_task(self, work: Awaitable[None]) -> asyncio.Task[None]:
        async def run() -> None:
            await work

        task = asyncio.ensure_future(run())
        self._tasks.append(task)
        return task

    async def __aexit__(self, kind: object, *exc: object) -> None:
        try:
            if kind is not None:
                return
            while self._tasks:
                done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    self._tasks.remove(task)
                    task.result()
        finally:
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._tasks, return_exceptions=True)
