"""The engine of `jib run`: every prompt against every generator, in chunks, stored as it goes.

Each generator gets one pipeline, `generator.chat(system).with_(params).watch(store).watch(stats)`,
and `run_batch` is called on chunks of the prompts file by a few worker tasks, so at most
`concurrency` prompts are in flight, progress moves chunk by chunk, and memory stays flat (the
file is streamed; finished chats are stored and dropped). Every chunk is stored in one
transaction before the next is taken, so a killed run leaves whole chats only, and `--resume`
skips what the run already stored: per generator identifier and exact conversation, as many times
as it was stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jib.chat import Chat
from jib.cli._progress import GeneratorStats, Reporter
from jib.cli._prompts import Prompt, PromptsFile
from jib.errors import InvalidGeneratorError
from jib.generator.base import Generator
from jib.messages import Message
from jib.params import GenerateParams
from jib.storage import ChatStore, input_key

__all__ = ["RunPlan", "chunking", "execute", "plan_run"]

ResumeKeys = Counter[tuple[str | None, str]]


def chunking(concurrency: int, batch_size: int | None) -> tuple[int, int]:
    """(prompts per `run_batch` call, worker tasks) so that at most `concurrency` are in flight.

    By default a chunk is a quarter of the concurrency (at least 1), so four chunks overlap and
    one slow item does not hold the rest back; `batch_size` sets the chunk size instead.
    """
    size = batch_size if batch_size is not None else max(1, math.ceil(concurrency / 4))
    size = max(1, min(size, concurrency))
    return size, max(1, concurrency // size)


@dataclass(slots=True)
class RunPlan:
    """What a run will do: the generators, their prompts, and how much was already stored."""

    generators: list[Generator]
    prompts: PromptsFile
    system: list[Message]
    params: GenerateParams
    run: str
    stats: list[GeneratorStats]
    resume_keys: ResumeKeys


def _identifier(generator: Generator, params: GenerateParams) -> str | None:
    try:
        return generator.to_identifier(params)
    except InvalidGeneratorError:
        return None


def _todo(plan: RunPlan, index: int) -> Iterator[Prompt]:
    """The prompts generator `index` still has to run, skipping those already stored."""
    generator = plan.generators[index]
    remaining = Counter(plan.resume_keys)
    # The identifier and conversation each stored chat got (see jib.storage._rows).
    shared_identifier = _identifier(generator, plan.params)
    system = [message.to_dict() for message in plan.system]
    for prompt in plan.prompts:
        if remaining:
            identifier = shared_identifier
            if prompt.params is not None:
                identifier = _identifier(generator, plan.params.merge_with(prompt.params))
            sent = [*system, *(message.to_dict() for message in prompt.messages)]
            key = (identifier, input_key(sent))
            if remaining[key] > 0:
                remaining[key] -= 1
                continue
        yield prompt


def plan_run(
    generators: Sequence[Generator],
    prompts: PromptsFile,
    *,
    system: list[Message],
    params: GenerateParams,
    run: str,
    resume_keys: ResumeKeys | None = None,
) -> RunPlan:
    """Count what each generator has to do (reading the file once per generator if resuming)."""
    plan = RunPlan(
        generators=list(generators),
        prompts=prompts,
        system=system,
        params=params,
        run=run,
        stats=[],
        resume_keys=resume_keys or Counter(),
    )
    for index, generator in enumerate(plan.generators):
        label = _identifier(generator, GenerateParams()) or generator.model
        todo = prompts.count if not plan.resume_keys else sum(1 for _ in _todo(plan, index))
        plan.stats.append(GeneratorStats(label, todo, skipped=prompts.count - todo))
    return plan


def _chunks(plan: RunPlan, size: int) -> Iterator[tuple[int, list[Prompt]]]:
    for index in range(len(plan.generators)):
        chunk: list[Prompt] = []
        for prompt in _todo(plan, index):
            chunk.append(prompt)
            if len(chunk) >= size:
                yield index, chunk
                chunk = []
        if chunk:
            yield index, chunk


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

    def watcher(index: int) -> Any:
        stats = plan.stats[index]

        def count(records: list[Chat]) -> None:
            for record in records:
                if record.failed:
                    stats.failed += 1
                    if stats.first_error is None:
                        stats.first_error = f"{type(record.error).__name__}: {record.error}"
                else:
                    stats.ok += 1
                if record.usage is not None:
                    stats.input_tokens += record.usage.input_tokens
                    stats.output_tokens += record.usage.output_tokens
            stats.finished = time.monotonic()
            reporter.update(index)

        return count

    pipelines = [
        generator.chat(plan.system)
        .with_(plan.params)
        .catch(Exception)  # a batch job records every failure and goes on
        .watch(store.watch(run=plan.run))
        .watch(watcher(index))
        for index, generator in enumerate(plan.generators)
    ]
    work = _chunks(plan, size)

    async def worker() -> None:
        for index, chunk in work:
            stats = plan.stats[index]
            if stats.started is None:
                stats.started = time.monotonic()
            many_params = (
                [prompt.params for prompt in chunk]
                if any(prompt.params for prompt in chunk)
                else None
            )
            await pipelines[index].run_batch(
                [prompt.messages for prompt in chunk], many_params, on_failed="include"
            )

    reporter.start(plan.stats)
    try:
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        reporter.stop()
        for generator in plan.generators:
            generator.unload()
