"""`ChatStream`: the text of one chat as it is generated, then the finished `Chat`.

The stream runs the pipeline's own `run` machinery (callbacks, watchers, `catch`, `on_failed`)
with the generator's `stream_messages` in place of a batch call, passing text deltas to the
reader through a queue. So a streamed chat is the same record as a run one, and is stored the
same way by a `watch`er.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Sequence
from typing import TYPE_CHECKING, Any

from jib.messages import GeneratedMessage, Message
from jib.params import GenerateParams

if TYPE_CHECKING:
    from jib.chat import Chat
    from jib.generator.base import Generator as JibGenerator
    from jib.pipeline._base import OnFailed
    from jib.pipeline.chat import Answer, ChatPipeline

__all__ = ["ChatStream"]


class ChatStream:
    """Text deltas of one chat as they arrive (`async for delta in stream`), then `stream.chat`.

    Generators that cannot stream give the whole answer as one delta. A chat of several rounds
    (tool calls, corrections of structured output) streams the text of each answer in turn; the
    calls, tool results and every round are in `stream.chat`. Awaiting the stream reads it to
    the end and returns the `Chat`. Leaving the `async for` early cancels the generation.

    Raises (while iterating, or from `await`):
        The chat's error, with `on_failed="raise"` (the default).
    """

    def __init__(self, pipeline: ChatPipeline, on_failed: OnFailed = "raise") -> None:
        if on_failed == "skip":
            raise ValueError("on_failed='skip' leaves nothing to return from a stream")
        self._pipeline = pipeline
        self._on_failed = on_failed
        self._chat: Chat | None = None
        self._started = False

    @property
    def chat(self) -> Chat:
        """The finished chat.

        Raises:
            RuntimeError: the stream has not been read to the end yet.
        """
        if self._chat is None:
            raise RuntimeError("the stream is not finished: read it to the end (or await it)")
        return self._chat

    def __aiter__(self) -> AsyncIterator[str]:
        if self._started:
            raise RuntimeError("a ChatStream can be read once; call pipeline.stream() again")
        self._started = True
        return self._deltas()

    def __await__(self) -> Generator[Any, None, Chat]:
        return self._finish().__await__()

    async def _finish(self) -> Chat:
        if not self._started:
            async for _ in self:
                pass
        return self.chat

    async def _deltas(self) -> AsyncIterator[str]:
        import asyncio

        queue: asyncio.Queue[str | None] = asyncio.Queue()
        pipeline = self._pipeline

        async def send(
            generator: JibGenerator,
            inputs: Sequence[list[Message]],
            params: Sequence[GenerateParams],
        ) -> list[GeneratedMessage | BaseException]:
            # One round of the chat (of a tool loop, or a correction, there may be several).
            streamed = False
            final: GeneratedMessage | None = None
            try:
                async for piece in generator.stream_messages(inputs[0], params[0]):
                    if isinstance(piece, str):
                        streamed = True
                        queue.put_nowait(piece)
                    else:
                        final = piece
            except Exception as exc:  # one item's failure: the pipeline's `catch` judges it
                return [exc]
            if final is None:
                return [RuntimeError(f"{type(generator).__name__} streamed no finished message")]
            if not streamed and final.message.content:
                queue.put_nowait(final.message.content)
            return [final]

        async def generate(
            generator: JibGenerator,
            inputs: Sequence[list[Message]],
            params: Sequence[GenerateParams],
        ) -> Sequence[Answer | BaseException]:
            return await pipeline._converse(send, generator, inputs, params)

        task = asyncio.ensure_future(
            pipeline._run(pipeline.generator, [pipeline._input], None, self._on_failed, generate)
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (delta := await queue.get()) is not None:
                yield delta
            self._chat = (await task)[0]
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
