"""`ChatPipeline`: build and run chat generations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from jib._conversation import SESSION_KEY
from jib.chat import Chat
from jib.errors import JibError
from jib.generator.base import Generator
from jib.messages import GeneratedMessage, Message, MessageInput, as_messages
from jib.params import GenerateParams, ToolChoice
from jib.pipeline._base import OnFailed, Pipeline, session_to_metadata
from jib.pipeline._caching import CacheMode
from jib.pipeline._rounds import Exchange, Plan, Send, converse
from jib.pipeline._stream import ChatStream
from jib.pipeline._structured import Structured
from jib.pipeline._tools import Catch, Tool, Toolbox
from jib.tools import ToolDefinition

__all__ = ["DEFAULT_MAX_CORRECTIONS", "DEFAULT_MAX_DEPTH", "ChatPipeline"]

DEFAULT_MAX_DEPTH = 10
"""Rounds of tool calls a chat may run before it fails with `ToolDepthError`."""
DEFAULT_MAX_CORRECTIONS = 2
"""Times an answer that does not validate is sent back before `StructuredOutputError`."""

ToolLike = Tool | ToolDefinition | Mapping[str, Any] | Callable[..., Any]
"""What `using()` takes: a function, a `Tool`, or a definition (then calls are only recorded)."""


Answer = Exchange | GeneratedMessage
"""What a chat's run produced: its rounds, or (a chat of one round) its generated message."""


class ChatPipeline(Pipeline[list[Message], Chat, Answer]):
    """A chat waiting to run: a generator, messages, params, callbacks and an error policy.

    Every builder method (`with_`, `wrap`, `then`, `map`, `watch`, `meta`, `catch`, `add`,
    `fork`, `using`, `cache`, `structured`) returns a new pipeline and leaves this one
    unchanged. Awaiting a pipeline runs it:

    >>> import asyncio, jib.testing
    >>> chat = asyncio.run(jib.testing.EchoGenerator(model="echo").chat("hello").run())
    >>> chat.content
    'hello'
    """

    __slots__ = ("_cache_mode", "_structured", "_toolbox")

    def __init__(
        self,
        generator: Generator,
        messages: MessageInput | Sequence[MessageInput] = (),
        params: GenerateParams | None = None,
    ) -> None:
        super().__init__(generator, as_messages(messages), params)
        self._toolbox: Toolbox | None = None
        self._structured: Structured | None = None
        self._cache_mode: CacheMode | None = None

    @property
    def messages(self) -> list[Message]:
        """The messages this pipeline sends (a copy)."""
        return list(self._input)

    def add(self, messages: MessageInput | Sequence[MessageInput]) -> ChatPipeline:
        """A new pipeline with `messages` appended (strings are user messages)."""
        clone = self._copy()
        clone._input = [*self._input, *as_messages(messages)]
        return clone

    def fork(self, messages: MessageInput | Sequence[MessageInput] = ()) -> ChatPipeline:
        """A copy of this pipeline, optionally with more messages, to run separately."""
        return self.add(messages)

    def using(
        self,
        *tools: ToolLike,
        max_depth: int = DEFAULT_MAX_DEPTH,
        catch: Catch = True,
        choice: ToolChoice | None = None,
    ) -> ChatPipeline:
        """A new pipeline that offers `tools` to the model and runs the calls it makes.

        >>> import asyncio, jib.testing
        >>> from jib import FunctionCall, ToolCall
        >>> def add(a: int, b: int) -> int:
        ...     "Add two numbers."
        ...     return a + b
        >>> call = ToolCall("c1", FunctionCall("add", '{"a": 2, "b": 3}'))
        >>> model = jib.testing.ScriptedGenerator(model="s", script=[[call], "2 + 3 = 5"])
        >>> chat = asyncio.run(model.chat("What is 2 + 3?").using(add).run())
        >>> [(m.role, m.content) for m in chat.generated]
        [('assistant', ''), ('tool', '5'), ('assistant', '2 + 3 = 5')]

        Each tool is a Python function (sync or async: its type hints and defaults make the
        schema, through pydantic; its docstring's first line the description, and its Args
        section each parameter's), a `Tool`, or a `ToolDefinition` (or the same as an
        OpenAI-shaped dict), which is only offered: a call to it is recorded, not run, and
        the chat ends on it for you to answer. Tools add up over `using()` calls; a tool of
        the same name replaces the earlier one. The definitions go into `params.tools`, and so
        into the chat's params: a continued chat (`chat.continue_`) offers them again but runs
        nothing until you call `using()` on it.

        A run goes in rounds: when the model asks for calls, they run (concurrently), each
        result goes back as a `Message("tool", result, tool_call_id=call.id)`, and the model is
        asked again, until it answers without calls. The chat holds every round:
        `chat.generated` is each answer and tool result in order (`chat.conversation` shows
        them), usage, attempts and latency are summed over the rounds, and `stop_reason` is the
        last answer's. In `run_batch` the rounds of all chats go in step, one batch call per
        round, each chat's rounds its own.

        A result that is a string is sent as is; content parts as parts; anything else as
        JSON. Arguments that are not JSON or do not validate, a call to a tool that does not
        exist, and (with `catch`) an exception a tool raises become an error result the model
        sees (`Error: ...`), so it can correct itself.

        Args:
            max_depth: rounds of tool calls a chat may run. A chat whose model still asks for
                calls after that many fails with `jib.errors.ToolDepthError`, every round kept
                (a chat ending on unanswered calls is no answer: it must not pass for one;
                `on_failed="include"` gives it back).
            catch: which exceptions of a tool the model sees as an error result: all
                (`True`), none (`False`: the chat fails with `jib.errors.ToolError`, the
                tool's exception its `__cause__`), or these exception types.
            choice: the `tool_choice` to send (it applies to every round).

        Raises:
            TypeError, ValueError: a tool cannot be offered (see `Tool.from_function`).
        """
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an int >= 1, not {max_depth!r}")
        if not isinstance(catch, bool):
            catch = tuple(catch)
            for exception_type in catch:
                if not (isinstance(exception_type, type) and issubclass(exception_type, Exception)):
                    raise TypeError(f"catch takes exception types, not {exception_type!r}")
        known = dict(self._toolbox.tools) if self._toolbox is not None else {}
        for value in _flat(tools):
            tool = Tool.of(value)
            known.pop(tool.name, None)  # a later tool of the same name replaces, at the end
            known[tool.name] = tool
        clone = self._copy()
        clone._toolbox = Toolbox(known, max_depth, catch)
        definitions = [t.definition for t in known.values()]
        names = set(known)
        others = [t for t in self.params.tools or () if t.function.name not in names]
        updates: dict[str, Any] = {"tools": [*others, *definitions] or None}
        if choice is not None:
            updates["tool_choice"] = choice
        clone.params = self.params.merge_with(GenerateParams(**updates))
        return clone

    def cache(self, mode: CacheMode | Literal[False] | None = "latest") -> ChatPipeline:
        """A new pipeline that marks messages for the provider's prompt cache.

        `"latest"` marks the latest two non-assistant messages of each request with
        `cache_control={"type": "ephemeral"}` (in a tool loop, of every round's request), after
        clearing any mark already on the messages; `None` (or `False`) stops marking, leaving
        marks you set on messages yourself as they are. The marks go on the request only: the
        chat keeps its messages as given, so a continued chat is marked afresh. This is the
        provider's prompt cache (Anthropic's through LiteLLM reads the marks; OpenAI caches by
        itself), not jib's response cache.

        >>> import jib.testing
        >>> pipeline = jib.testing.EchoGenerator(model="e").chat("hi")
        >>> pipeline.cache("latest") is not pipeline
        True
        """
        if mode is False:
            mode = None
        if mode not in ("latest", None):
            raise ValueError(f"cache() takes 'latest' or None, not {mode!r}")
        clone = self._copy()
        clone._cache_mode = mode
        return clone

    def structured(
        self, model: type[BaseModel], *, max_corrections: int = DEFAULT_MAX_CORRECTIONS
    ) -> ChatPipeline:
        """A new pipeline that asks for JSON of `model`'s shape and validates it into
        `chat.output` (an instance of `model`).

        `response_format` is set from the model's JSON schema. An answer that does not
        validate is sent back with what was wrong and the model is asked again, up to
        `max_corrections` times (every answer stays in the chat); then the chat fails with
        `jib.errors.StructuredOutputError`, which shows the last answer (secrets redacted, cut
        short). An answer wrapped in a Markdown code fence is read without the fence. With
        `using()`, the answer after the tool calls is the one validated; a chat that ends on
        calls recorded for you to answer has no output.

        >>> import asyncio, jib.testing
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        ...     population: int
        >>> model = jib.testing.ScriptedGenerator(model="s", script=[
        ...     '{"name": "Paris"}', '{"name": "Paris", "population": 2102650}'])
        >>> chat = asyncio.run(model.chat("Describe Paris").structured(City).run())
        >>> chat.output
        City(name='Paris', population=2102650)
        >>> len(chat.generated)  # the first answer, the correction, the second answer
        3
        """
        plan = Structured(model, max_corrections)
        clone = self._copy()
        clone._structured = plan
        clone.params = self.params.merge_with(GenerateParams(response_format=model))
        return clone

    def stream(self, on_failed: OnFailed = "raise") -> ChatStream:
        """Run once, receiving the answer's text as it is generated.

        >>> import asyncio, jib.testing
        >>> async def main():
        ...     stream = jib.testing.EchoGenerator(model="e").chat("hello").stream()
        ...     deltas = [delta async for delta in stream]
        ...     return deltas, stream.chat.content
        >>> asyncio.run(main())
        (['hello'], 'hello')

        Generators that stream (`openai!`, LiteLLM) give text in pieces; others give the whole
        answer as one piece. The finished `Chat` (`stream.chat`, or `await stream`) equals the
        one `run()` would make, and goes through the same callbacks and watchers. `wrap()`
        wrappers are not applied to a stream (a wrapper takes a coroutine function, and a stream
        is not one); the generator's own retries are, before the first piece.

        Args:
            on_failed: `"raise"` raises a failure from the stream; `"include"` ends the stream
                and leaves the failed chat in `stream.chat`.
        """
        return ChatStream(self, on_failed)

    def _normalize_input(self, value: Any) -> list[Message]:
        return as_messages(value)

    def _extend(self, input: list[Message]) -> list[Message]:
        return [*self._input, *input] if self._input else input

    def _inputs(self, many_inputs: Sequence[Any]) -> list[list[Message]]:
        base = self._input
        inputs = [
            [Message("user", item)] if type(item) is str else as_messages(item)
            for item in many_inputs
        ]
        return [[*base, *messages] for messages in inputs] if base else inputs

    async def _generate(
        self,
        generator: Generator,
        inputs: Sequence[list[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[Answer | BaseException]:
        if self._one_round:  # sent straight to the generator (as `_converse` would send it)
            return await generator.generate_messages(inputs, params)
        return await self._converse(_send_batch, generator, inputs, params)

    @property
    def _one_round(self) -> bool:
        """Whether each chat is one round: no tools to run, nothing to validate or mark."""
        return self._toolbox is None and self._structured is None and self._cache_mode is None

    async def _converse(
        self,
        send: Send,
        generator: Generator,
        inputs: Sequence[list[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[Answer | BaseException]:
        """Run `inputs` in rounds (see `jib.pipeline._rounds`), each round's generation by
        `send`; an item that failed before any answer is its bare exception.

        A chat of one round (no tools, no structured output, no cache marks: the common case)
        is its generated message itself, without rounds or an `Exchange` around it.
        """
        if self._one_round:
            return list(await send(generator, list(inputs), list(params)))
        plan = Plan(self._toolbox, self._structured, self._cache_mode, _secrets_of(generator))
        return await converse(plan, send, generator, inputs, params)

    def _failure_in(self, result: Answer | BaseException) -> BaseException | None:
        if isinstance(result, BaseException):
            return result
        if isinstance(result, Exchange):
            return result.error
        return None

    def _record(
        self,
        generator: Generator,
        input: list[Message],
        params: GenerateParams,
        result: Answer | None,
        error: BaseException | None,
        batch_ms: float | None = None,
    ) -> Chat:
        # `Pipeline._record` for a chat, the record built at once (one per chat on the hot
        # path): the same fields, without a dict of them in between.
        metadata = dict(self._metadata)
        if result is None:
            # A copy: records of one run (and the pipeline) must not share one mutable list.
            return Chat(
                generator=generator,
                params=params,
                failed=error is not None,
                error=error,
                metadata=metadata,
                attempts=error.attempts if isinstance(error, JibError) else None,
                messages=list(input),
            )
        if isinstance(result, Exchange):
            # The exchange is this record's alone: its list is not copied.
            generated, output, extra = result.generated, result.output, result.extra
        else:  # a chat of one round: its answer
            generated, output, extra = [result.message], None, result.extra
            if result.refusal:
                extra = {**extra, "refusal": result.refusal}
        if SESSION_KEY in extra:
            extra = session_to_metadata(extra, metadata)
        return Chat(
            generator=generator,
            params=params,
            stop_reason=result.stop_reason,
            usage=result.usage,
            failed=error is not None,
            error=error,
            metadata=metadata,
            extra=extra,
            attempts=result.attempts,
            latency_ms=batch_ms if result.latency_ms is None else result.latency_ms,
            messages=list(input),
            generated=generated,
            output=output,
        )


def _secrets_of(generator: Generator) -> Callable[[], Sequence[str | None]]:
    """What an error must not show of `generator`: the secrets its requests carry (a wired
    provider knows them all), else its key."""

    def secrets() -> Sequence[str | None]:
        try:
            # A wired provider knows them all (so does a response cache's stand-in for one).
            wire_secrets = getattr(generator, "wire_secrets", None)
            if wire_secrets is not None:
                return list(wire_secrets())
            return [generator.get_api_key()]
        except JibError:  # an `env:` key that is not set: nothing to hide
            return []

    return secrets


async def _send_batch(
    generator: Generator, conversations: list[list[Message]], params: list[GenerateParams]
) -> Sequence[GeneratedMessage | BaseException]:
    return await generator.generate_messages(conversations, params)


def _flat(tools: Sequence[Any]) -> list[Any]:
    """The tools given, a list or tuple of them taken as its items."""
    flat: list[Any] = []
    for value in tools:
        if isinstance(value, (list, tuple)):
            flat.extend(value)
        else:
            flat.append(value)
    return flat
