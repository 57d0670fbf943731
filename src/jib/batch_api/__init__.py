"""Providers' batch APIs: a run's requests answered within hours, at half price.

OpenAI's batch API (files + `/v1/batches`, for `openai!` generators and LiteLLM's `openai/…`,
at `api_base`: any server implementing it) and Anthropic's Message Batches (`anthropic/…`) are
spoken by jib's own protocol code over its wire; other providers refuse with
`BatchAPIUnsupportedError`. This is not `run_batch`, which sends many prompts now, each its own
request.

From Python, `run_with_batch_api` takes chat pipelines and returns their chats, in order:

    gpt = jib.get_generator("openai!gpt-4o-mini")
    chats = await run_with_batch_api([gpt.chat(q) for q in questions])
    chats[0].extra["batch_api"]  # {'provider': 'openai', 'batch_id': 'batch_…'}

(docs/batch_api.md has examples that run against a local stub.)

From the command line, `jib run --batch-api` (see docs/batch_api.md), which keeps the batches
in the store so `--resume` after a crash polls them instead of paying twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jib.batch_api._engine import (
    DEFAULT_LIMITS,
    BatchAPIJob,
    BatchAPISettings,
    Delivery,
    Request,
)
from jib.batch_api._journal import Journal, JournalEntry, MemoryJournal
from jib.chat import Chat
from jib.cost import BATCH_API_PRICE_FACTOR
from jib.errors import InvalidGeneratorError
from jib.generator._batch_api import BatchClient, BatchLimits, custom_id_for
from jib.generator.base import Generator
from jib.messages import GeneratedMessage
from jib.registry import provider_name_for

if TYPE_CHECKING:
    from jib.pipeline import OnFailed
    from jib.pipeline.chat import ChatPipeline

__all__ = [
    "DEFAULT_LIMITS",
    "BatchAPIJob",
    "BatchAPISettings",
    "BatchAPIUnsupportedError",
    "BatchLimits",
    "Delivery",
    "Journal",
    "JournalEntry",
    "MemoryJournal",
    "Request",
    "batch_api_client",
    "chat_from_result",
    "run_jobs",
    "run_with_batch_api",
]


class BatchAPIUnsupportedError(InvalidGeneratorError):
    """The generator's provider has no batch API jib speaks (or the pipeline does something a
    batch cannot: tool loops, structured output)."""


def batch_api_client(generator: Generator) -> BatchClient:
    """The batch API client for `generator`'s provider.

    Raises:
        BatchAPIUnsupportedError: the provider has none jib speaks.
    """
    client = generator.batch_api_client()
    if client is None:
        provider = provider_name_for(type(generator)) or type(generator).__name__
        raise BatchAPIUnsupportedError(
            f"{provider}!{generator.model} has no batch API jib speaks: --batch-api works with "
            "openai! generators (and openai/… with api_base: any server speaking OpenAI's "
            "files and batches protocol) and anthropic/… models; run this one without it"
        )
    return client


def chat_from_result(
    generator: Generator,
    request: Request,
    result: GeneratedMessage | BaseException,
    delivery: Delivery,
    *,
    cost: float | None = None,
) -> Chat:
    """The chat of one request answered (or failed) through a batch API.

    `extra["batch_api"]` names the provider and batch (none when it was sent directly);
    `latency_ms` is the time from submitting its batch to its result; `attempts` counts the
    batches (and direct sends) it took.
    """
    latency_ms = max(0.0, (time.time() - delivery.submitted_at) * 1000)
    via = {"provider": delivery.provider, "batch_id": delivery.batch_id}
    if isinstance(result, BaseException):
        return Chat(
            messages=list(request.messages),
            generator=generator,
            params=request.params,
            failed=True,
            error=result,
            attempts=delivery.attempts,
            latency_ms=latency_ms,
            extra={"batch_api": via},
        )
    return Chat(
        messages=list(request.messages),
        generated=[result.message],
        generator=generator,
        params=request.params,
        stop_reason=result.stop_reason,
        usage=result.usage,
        extra={**result.extra, "batch_api": via},
        attempts=delivery.attempts,
        latency_ms=latency_ms,
        cost_usd=cost,
    )


async def run_with_batch_api(
    pipelines: Sequence[ChatPipeline],
    *,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    poll_seconds: float = 10.0,
    max_poll_seconds: float = 300.0,
    max_attempts: int = 3,
    fallback: bool = False,
    journal: Journal | None = None,
    run: str | None = None,
    on_failed: OnFailed = "raise",
) -> list[Chat]:
    """Send each pipeline's request through its provider's batch API; its chat, in order.

    Pipelines of one generator share batches (split within `max_requests` and `max_bytes`
    of input, the provider's limits by default); each batch is polled every `poll_seconds`,
    growing to `max_poll_seconds`.
    A request that fails in a way worth retrying, or that its batch did not run, is tried
    again alone (`max_attempts` in all; directly with `fallback`). A batch the provider refuses
    on submission is split down to the requests it refuses, each failing alone. `journal` (a
    `MemoryJournal` by default; `jib.storage.ProviderBatchJournal(store)` to keep it across
    processes) records every batch before it is waited on; with the same `journal` and `run`, a
    second call polls the batches the first left uncollected. A chat's cost is the
    provider's list price at `BATCH_API_PRICE_FACTOR`, when known.

    `on_failed`: `"raise"` the first failure (once every request has its result),
    `"include"` failed chats, or `"skip"` them.

    Raises:
        BatchAPIUnsupportedError: a generator has no batch API jib speaks, or a pipeline uses
            tools, structured output or prompt-cache marks.
    """
    if on_failed not in ("raise", "include", "skip"):
        raise ValueError(f"on_failed must be 'raise', 'include' or 'skip', not {on_failed!r}")
    journal = journal if journal is not None else MemoryJournal()
    settings = BatchAPISettings(
        max_requests=max_requests,
        max_bytes=max_bytes,
        poll_seconds=poll_seconds,
        max_poll_seconds=max_poll_seconds,
        max_attempts=max_attempts,
        fallback=fallback,
        label=run or "jib",
    )
    groups: dict[int, tuple[Generator, list[tuple[int, Request]]]] = {}
    for position, pipeline in enumerate(pipelines):
        _check_pipeline(pipeline)
        generator = pipeline.generator
        params = generator.params.merge_with(pipeline.params)
        messages = pipeline.messages
        key = json.dumps([m.to_dict() for m in messages], sort_keys=True, default=str)
        identifier = _identifier(generator)
        request = Request(custom_id_for(identifier, position, key), messages, params)
        groups.setdefault(id(generator), (generator, []))[1].append((position, request))
    chats: dict[int, Chat] = {}
    jobs: list[BatchAPIJob] = []
    for generator, items in groups.values():
        client = batch_api_client(generator)
        positions = {request.custom_id: position for position, request in items}

        async def keep(
            request: Request,
            result: GeneratedMessage | BaseException,
            delivery: Delivery,
            generator: Generator = generator,
            positions: dict[str, int] = positions,
        ) -> None:
            cost = None
            if not isinstance(result, BaseException) and result.usage is not None:
                price = generator.list_price(result.usage)
                if price is not None:
                    cost = price * (BATCH_API_PRICE_FACTOR if delivery.batch_id else 1.0)
            chats[positions[request.custom_id]] = chat_from_result(
                generator, request, result, delivery, cost=cost
            )

        job = BatchAPIJob(
            generator,
            client,
            [request for _, request in items],
            generator_id=_identifier(generator),
            run=run,
            journal=journal,
            on_result=keep,
            settings=settings,
        )
        jobs.append(job)
    await run_jobs(jobs)
    ordered = [chats[position] for position in sorted(chats)]
    if on_failed == "raise":
        for chat in ordered:
            if chat.failed and chat.error is not None:
                raise chat.error
    if on_failed == "skip":
        ordered = [chat for chat in ordered if not chat.failed]
    return ordered


async def run_jobs(jobs: Sequence[BatchAPIJob]) -> None:
    """Run `jobs` side by side; when one fails, the others are cancelled and its error raised
    (the batches they submitted are in the journal)."""
    tasks = [asyncio.ensure_future(job.run()) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _identifier(generator: Generator) -> str:
    try:
        return generator.to_identifier()
    except InvalidGeneratorError:
        return f"{type(generator).__name__}:{generator.model}"


def _check_pipeline(pipeline: Any) -> None:
    uses = [
        what
        for what, attribute in (
            ("tools (using)", "_toolbox"),
            ("structured output", "_structured"),
            ("prompt-cache marks (cache)", "_cache_mode"),
        )
        if getattr(pipeline, attribute, None) is not None
    ]
    if uses:
        raise BatchAPIUnsupportedError(
            f"a pipeline sent through a batch API is one request; this one uses "
            f"{', '.join(uses)}, which take rounds of requests: run it without the batch API"
        )
