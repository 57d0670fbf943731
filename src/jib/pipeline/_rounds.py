"""A chat run in rounds: generate, run the tool calls asked for, check the answer, generate again.

A plain chat is one round. With tools (`.using`) a round that asks for calls is followed by the
calls' results and another round, until an answer without calls; with structured output
(`.structured`) an answer that does not validate is followed by a correction and another round.

Rounds go in step across a batch: round `n` of every chat still going is one batch call to the
generator (local models batch it; remote ones send its items concurrently within their limits),
then every tool call of that round runs, concurrently. Each chat's rounds are its own: one
chat's failure, depth or corrections never touch another's.

What a chat's run produced is an `Exchange`: every message after the input (assistant answers,
tool results, corrections), the totals over its rounds (usage, attempts, latency), its
validated output, and the error it ended with, if any; the pipeline turns it into the `Chat`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jib.errors import JibError, ToolDepthError, ToolError
from jib.generator.base import Generator
from jib.messages import GeneratedMessage, Message, StopReason, Usage
from jib.params import GenerateParams
from jib.pipeline._caching import CacheMode, mark_latest
from jib.pipeline._structured import Invalid, Structured
from jib.pipeline._tools import Toolbox

__all__ = ["Exchange", "Plan", "Send", "converse"]

Send = Callable[
    [Generator, list[list[Message]], list[GenerateParams]],
    Awaitable[Sequence[GeneratedMessage | BaseException]],
]
"""One round's generation for a batch: one result (or the item's exception) per conversation."""


@dataclass(slots=True, eq=False)
class Exchange:
    """What one chat's rounds produced.

    Attributes:
        generated: every message after the input, in order.
        stop_reason, extra, refusal: those of the last answer.
        usage, attempts, latency_ms: summed over the rounds (`None` when none reported).
        output: the validated structured answer.
        error: what the chat ended with, when it failed (the messages so far are kept).
        rounds: how many answers were generated.
    """

    generated: list[Message] = field(default_factory=list)
    stop_reason: StopReason = "unknown"
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None
    latency_ms: float | None = None
    refusal: str | None = None
    output: Any = None
    error: BaseException | None = None
    rounds: int = 0

    def add(self, result: GeneratedMessage, round_ms: float) -> None:
        """Count one round's answer."""
        self.generated.append(result.message)
        self.stop_reason = result.stop_reason
        if result.usage is not None:
            self.usage = result.usage if self.usage is None else self.usage + result.usage
        self.extra = result.extra
        if result.refusal:
            self.extra = {**result.extra, "refusal": result.refusal}
        self.refusal = result.refusal
        self.attempts = _plus(self.attempts, result.attempts)
        latency = result.latency_ms if result.latency_ms is not None else round_ms
        self.latency_ms = _plus(self.latency_ms, latency)
        self.rounds += 1

    def fail(self, error: BaseException) -> None:
        """End the chat with `error`; a failed request's attempts count too."""
        self.error = error
        if isinstance(error, JibError):
            self.attempts = _plus(self.attempts, error.attempts)


def _plus(total: Any, value: Any) -> Any:
    if value is None:
        return total
    return value if total is None else total + value


@dataclass(frozen=True, slots=True)
class Plan:
    """How a pipeline runs its rounds: its tools, structured output and prompt-cache marks."""

    toolbox: Toolbox | None = None
    structured: Structured | None = None
    cache: CacheMode | None = None
    secrets: Callable[[], Sequence[str | None]] = tuple
    """Values an error showing an answer must not hold (the generator's key), asked for only
    when such an error is made."""


async def converse(
    plan: Plan,
    send: Send,
    generator: Generator,
    inputs: Sequence[list[Message]],
    params: Sequence[GenerateParams],
) -> list[Exchange | BaseException]:
    """Run each conversation of `inputs` in rounds until each is answered or failed.

    Returns:
        Each chat's `Exchange`; for a chat that failed before any answer, its exception.

    Raises:
        What `send` raises for the whole batch, and any exception that is not an item's
        failure (the rounds still running are cancelled).
    """
    exchanges = [Exchange() for _ in inputs]
    depth = [0] * len(inputs)
    corrections = [0] * len(inputs)
    active = list(range(len(inputs)))
    while active:
        conversations = [
            [*inputs[i], *exchanges[i].generated] if exchanges[i].generated else inputs[i]
            for i in active
        ]
        if plan.cache is not None:
            conversations = [mark_latest(conversation) for conversation in conversations]
        started = time.perf_counter()
        results = await send(generator, conversations, [params[i] for i in active])
        round_ms = (time.perf_counter() - started) * 1000
        _check_count(generator, results, active)
        calling: list[int] = []
        going: list[int] = []
        for i, result in zip(active, results, strict=True):
            exchange = exchanges[i]
            if isinstance(result, BaseException):
                exchange.fail(result)
                continue
            exchange.add(result, round_ms)
            if _next_step(plan, exchange, result, params[i], depth[i], corrections[i]):
                if result.message.tool_calls:
                    calling.append(i)
                else:
                    corrections[i] += 1
                    going.append(i)
        if calling:
            going += await _run_tools(plan, exchanges, calling)
            for i in calling:
                depth[i] += 1
        active = sorted(i for i in going if exchanges[i].error is None)
    return [
        exchange.error if exchange.error is not None and not exchange.rounds else exchange
        for exchange in exchanges
    ]


def _check_count(generator: Generator, results: Sequence[Any], batch: Sequence[Any]) -> None:
    if len(results) != len(batch):
        raise RuntimeError(
            f"{type(generator).__name__} returned {len(results)} results for a batch of "
            f"{len(batch)}; a generator must return one result per item"
        )


def _next_step(
    plan: Plan,
    exchange: Exchange,
    result: GeneratedMessage,
    params: GenerateParams,
    depth: int,
    corrections: int,
) -> bool:
    """Whether the chat goes on to another round (after its tool calls, or a correction it was
    just given); the chat is finished or failed otherwise."""
    calls = result.message.tool_calls
    toolbox = plan.toolbox
    if calls:
        offered = (tool.function.name for tool in params.tools or ())
        if toolbox is None or not toolbox.runs_all(calls, offered):
            return False  # calls to tools only offered are recorded: the caller answers them
        if depth >= toolbox.max_depth:
            names = ", ".join(sorted({call.function.name for call in calls}))
            exchange.fail(
                ToolDepthError(
                    f"the model still asked for tool calls ({names}) after {depth} rounds of "
                    f"them (max_depth={toolbox.max_depth}); raise max_depth or change the prompt",
                    toolbox.max_depth,
                )
            )
            return False
        return True
    structured = plan.structured
    if structured is None:
        return False
    try:
        exchange.output = structured.validate(result.message, result.refusal)
    except Invalid as invalid:
        if corrections >= structured.max_corrections:
            exchange.fail(structured.failure(invalid, plan.secrets()))
            return False
        exchange.generated.append(structured.correction(invalid))
        return True
    return False


async def _run_tools(plan: Plan, exchanges: list[Exchange], calling: list[int]) -> list[int]:
    """Answer the calls of each chat in `calling` (all concurrently); return the chats that go
    on. A chat whose tool raised past `catch` fails with the `ToolError`."""
    toolbox = plan.toolbox
    assert toolbox is not None

    async def answer(i: int) -> list[Message] | ToolError:
        try:
            return await toolbox.answer(exchanges[i].generated[-1].tool_calls)
        except ToolError as error:
            return error

    tasks = [asyncio.ensure_future(answer(i)) for i in calling]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    going = []
    for i, messages in zip(calling, answers, strict=True):
        if isinstance(messages, ToolError):
            exchanges[i].fail(messages)
        else:
            exchanges[i].generated.extend(messages)
            going.append(i)
    return going
