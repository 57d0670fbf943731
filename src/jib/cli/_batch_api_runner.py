"""`jib run --batch-api`: the run's requests through the providers' batch APIs.

The same plan as `jib run` (`jib.cli._runner`: what to run, what `--resume` skips), the same
records (prompt id, sample, metadata, schema) and the same `BatchWriter`; only the way requests
travel differs: each generator's requests go to a `jib.batch_api.BatchAPIJob`, whose batches are
written to the store (`ProviderBatchJournal`) before they are waited on, and each chat is
handed to the writer as its result arrives, its cost at the batch price. A batch counts as
collected only once the writer has committed its chats, so a run killed at any point resumes by
polling (or downloading again) what it submitted, never by submitting it again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from jib.batch_api import (
    BatchAPIJob,
    BatchAPISettings,
    Delivery,
    JournalEntry,
    Request,
    batch_api_client,
    chat_from_result,
    run_jobs,
)
from jib.chat import Chat
from jib.cli._progress import Reporter
from jib.cli._runner import RunPlan, WorkItem, _annotate, _identifier, _tally, _with_refused, _work
from jib.cli._writer import BatchWriter
from jib.generator._batch_api import custom_id_for
from jib.messages import GeneratedMessage
from jib.storage import ChatStore, ProviderBatchJournal, input_key

__all__ = ["BatchAPICounts", "check_batch_api", "execute_with_batch_api"]


@dataclass(slots=True)
class BatchAPICounts:
    """What a run did with the batch APIs: batches submitted now, and those it resumed."""

    submitted: int = 0
    resumed: int = 0


def check_batch_api(plan: RunPlan) -> None:
    """Refuse, before anything is sent, a generator whose provider has no batch API jib speaks.

    Raises:
        BatchAPIUnsupportedError: the message names the generator.
    """
    for generator in plan.generators:
        batch_api_client(generator)


@dataclass(slots=True)
class _DeferredJournal:
    """The store's journal, holding "collected" marks back until the writer has committed."""

    journal: ProviderBatchJournal
    marks: list[str] = field(default_factory=list)

    def uncollected(self, generator_id: str, run: str | None) -> list[JournalEntry]:
        return self.journal.uncollected(generator_id, run)

    def submitted(self, entry: JournalEntry) -> None:
        self.journal.submitted(entry)

    def update(self, key: str, status: str) -> None:
        self.journal.update(key, status)

    def collected(self, key: str) -> None:
        self.marks.append(key)

    def commit(self) -> None:
        for key in self.marks:
            self.journal.collected(key)
        self.marks.clear()


async def execute_with_batch_api(
    plan: RunPlan, store: ChatStore, reporter: Reporter, settings: BatchAPISettings
) -> BatchAPICounts:
    """Run the plan through the batch APIs, storing every chat as its result arrives."""
    journal = _DeferredJournal(ProviderBatchJournal(store))
    writer = BatchWriter(store, run=plan.run, tags=plan.tags)
    counts = BatchAPICounts()
    jobs: list[BatchAPIJob] = []
    reporter.start(plan.stats)
    try:
        for index in range(len(plan.generators)):
            items = list(_work(plan, index))
            refused = [item for item in items if item.refused is not None]
            if refused:
                records = _with_refused(plan, index, refused, [])
                await _keep(plan, index, refused, records, writer, reporter)
            job = _job(plan, index, [i for i in items if i.refused is None], journal, writer,
                       reporter, settings)  # fmt: skip
            if job is not None:
                jobs.append(job)
        try:
            await run_jobs(jobs)
        finally:
            counts.submitted = sum(job.submitted_batches for job in jobs)
            counts.resumed = sum(job.resumed_batches for job in jobs)
        await writer.close()
        journal.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            await writer.close()
            journal.commit()
        raise
    finally:
        writer.abandon()
        reporter.stop()
        for generator in plan.generators:
            generator.unload()
    return counts


def _job(
    plan: RunPlan,
    index: int,
    items: Sequence[WorkItem],
    journal: _DeferredJournal,
    writer: BatchWriter,
    reporter: Reporter,
    settings: BatchAPISettings,
) -> BatchAPIJob | None:
    generator = plan.generators[index]
    generator_id = _identifier(generator, plan.params) or generator.model
    base = generator.params.merge_with(plan.params)
    by_id: dict[str, WorkItem] = {}
    requests: list[Request] = []
    for item in items:
        # What is sent is part of the id: a prompt edited since a crash is not joined to the
        # answer its old text got in a batch still in flight.
        params = item.prompt.params.to_dict() if item.prompt.params is not None else None
        sent = input_key([[m.to_dict() for m in item.messages], params])
        custom_id = custom_id_for(generator_id, item.prompt.id, item.sample, sent)
        by_id[custom_id] = item
        requests.append(Request(custom_id, item.messages, base.merge_with(item.prompt.params)))
    if not requests:
        return None

    async def on_result(
        request: Request, result: GeneratedMessage | BaseException, delivery: Delivery
    ) -> None:
        cost = None
        if not isinstance(result, BaseException):
            prices = plan.prices
            cost = (
                prices.batch_api_cost(generator, result.usage)
                if delivery.batch_id is not None
                else prices.cost(generator, result.usage)
            )
        record = chat_from_result(generator, request, result, delivery, cost=cost)
        item = by_id[request.custom_id]
        await _keep(plan, index, [item], [record], writer, reporter)

    return BatchAPIJob(
        generator,
        batch_api_client(generator),
        requests,
        generator_id=generator_id,
        run=plan.run,
        journal=journal,
        on_result=on_result,
        settings=settings,
    )


async def _keep(
    plan: RunPlan,
    index: int,
    items: Sequence[WorkItem],
    records: list[Chat],
    writer: BatchWriter,
    reporter: Reporter,
) -> None:
    stats = plan.stats[index]
    if stats.started is None:
        stats.started = time.monotonic()
    for item, record in zip(items, records, strict=True):
        _annotate(record, item, record.latency_ms or 0.0, plan.prices)
        if plan.schema is not None and not record.failed:
            plan.schema.apply(record)
    _tally(plan, index, records, reporter)
    reporter.update(index)
    await writer.put(records, replacing=[i.replacing for i in items if i.replacing])
