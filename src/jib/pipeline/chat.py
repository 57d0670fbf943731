"""`ChatPipeline`: build and run chat generations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jib.chat import Chat
from jib.generator.base import Generator
from jib.messages import GeneratedMessage, Message, MessageInput, as_messages
from jib.params import GenerateParams
from jib.pipeline._base import OnFailed, Pipeline
from jib.pipeline._stream import ChatStream

__all__ = ["ChatPipeline"]


class ChatPipeline(Pipeline[list[Message], Chat, GeneratedMessage]):
    """A chat waiting to run: a generator, messages, params, callbacks and an error policy.

    Every builder method (`with_`, `wrap`, `then`, `map`, `watch`, `meta`, `catch`, `add`,
    `fork`) returns a new pipeline and leaves this one unchanged. Awaiting a pipeline runs it:

    >>> import asyncio, jib.testing
    >>> chat = asyncio.run(jib.testing.EchoGenerator(model="echo").chat("hello").run())
    >>> chat.content
    'hello'
    """

    __slots__ = ()

    def __init__(
        self,
        generator: Generator,
        messages: MessageInput | Sequence[MessageInput] = (),
        params: GenerateParams | None = None,
    ) -> None:
        super().__init__(generator, as_messages(messages), params)

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

    async def _generate(
        self,
        generator: Generator,
        inputs: Sequence[list[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedMessage | BaseException]:
        return await generator.generate_messages(inputs, params)

    def _make_record(
        self, input: list[Message], result: GeneratedMessage | None, fields: dict[str, Any]
    ) -> Chat:
        generated = [result.message] if result is not None else []
        # A copy: records of one run (and the pipeline) must not share one mutable list.
        return Chat(messages=list(input), generated=generated, **fields)
