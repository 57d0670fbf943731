"""`WSGenerator` (`ws!`): a chatbot on a WebSocket as a generator, described by a `WSSpec`.

It is `http!` with another way to move the conversation: everything but the exchange itself is
`HTTPGenerator`'s — the spec's sandbox and budgets, `state`, identifiers (the spec as base64 of
its YAML, the key left out), secrets kept out of errors and logs, the trust rules (the spec's
URL is where the key goes), and the request tier's limits, retries and timeout budget.

One attempt: open a connection (through the wire's `WebSockets`: proxy, TLS, redirect and secret
rules), send the rendered `request.message`, read frames until the answer is complete (see
`jib.generator.ws.spec`). A connection that closes or breaks before that is a retryable
`ProviderConnectionError`: the request tier sends the whole turn again on a new connection, and
the frames already read are dropped, so two answers are never mixed. With
`request.connection: session`, the connection stays open after an answer for the next turn of
the same conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import PrivateAttr, field_validator

from jib._per_loop import PerLoop, RuntimeResource
from jib._wire import WireRequest
from jib._wire.models import too_large
from jib._wire.websocket import WebSockets, WireSocket
from jib.errors import InvalidGeneratorError, ProcessingError
from jib.generator.http.generator import HTTPGenerator
from jib.generator.http.spec import RequestTransformContext
from jib.generator.ws.spec import WSSpec
from jib.messages import GeneratedMessage, Message
from jib.params import GenerateParams
from jib.tools import ToolCall

__all__ = ["WSGenerator"]

MAX_IDLE_SESSIONS = 256
"""Session connections kept open between turns, per event loop; the oldest closes first."""


class WSGenerator(HTTPGenerator):
    """Wraps a chatbot on a WebSocket: `spec` says what frame to send and how frames become the
    answer (`WSSpec`).

    Attributes:
        spec: the `WSSpec`; assign a model, dict, JSON, YAML or base64 of JSON/YAML.
        state: mutable runtime data visible to templates as `state`, as for `http!`.
        (and `render_limits`, the wire settings `proxy`, `verify`, `max_response_bytes`,
        `max_redirects`, and the request tier's limits and retry settings, as for `http!`;
        `max_response_bytes` bounds each frame and the answer they add up to)

    `hook` is `http!`'s alone (it reads HTTP responses); the factories `for_json_endpoint` and
    `for_text_endpoint` build `http!` specs and are refused here.
    """

    spec: WSSpec | None = None

    _sockets: WebSockets | None = PrivateAttr(default=None)
    _parked: _ParkedSessions = PrivateAttr(default_factory=lambda: _ParkedSessions())

    @field_validator("hook")
    @classmethod
    def _no_hook(cls, value: Any) -> Any:
        if value is not None:
            raise InvalidGeneratorError(
                "ws! takes no hook (a hook reads HTTP responses); describe the answer with "
                "response.skip/done/idle_timeout"
            )
        return value

    @classmethod
    def for_json_endpoint(cls, *args: Any, **kwargs: Any) -> HTTPGenerator:
        """Not for WebSockets: use `HTTPGenerator.for_json_endpoint` for an HTTP endpoint."""
        raise InvalidGeneratorError(
            "for_json_endpoint builds an http! spec; for a WebSocket pass spec= to WSGenerator"
        )

    @classmethod
    def for_text_endpoint(cls, *args: Any, **kwargs: Any) -> HTTPGenerator:
        """Not for WebSockets: use `HTTPGenerator.for_text_endpoint` for an HTTP endpoint."""
        raise InvalidGeneratorError(
            "for_text_endpoint builds an http! spec; for a WebSocket pass spec= to WSGenerator"
        )

    # -- the wire ------------------------------------------------------------------------------

    @property
    def websockets(self) -> WebSockets:
        """Where this generator opens its connections; a copy whose settings changed gets its
        own (the same settings as `wire`)."""
        settings = self.wire_settings()
        sockets: WebSockets | None = self._runtime["_sockets"]
        if sockets is None or sockets.settings != settings:
            sockets = self._sockets = WebSockets(settings)
        return sockets

    async def aclose(self) -> None:
        """Close the running event loop's connections (new ones open on next use)."""
        await self._parked.aclose()
        if self._sockets is not None:
            await self._sockets.aclose()
        await super().aclose()

    def unload(self) -> WSGenerator:
        """Forget the connections; they close when their event loops shut down."""
        self._sockets = None
        super().unload()
        return self

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """For jib's response cache: the params and the messages (the spec, in the identity,
        says how they become a frame; the frame itself is rendered per connection)."""
        from jib.generator._response_key import generic_request

        return generic_request(item, params)

    # -- one turn ------------------------------------------------------------------------------

    async def _call(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> tuple[str, list[ToolCall], dict[str, Any]]:
        """One attempt, read whole (see `_turn`). Retries are the request tier's."""
        async with contextlib.aclosing(self._turn(self._context(messages, params), params)) as turn:
            async for item in turn:
                if isinstance(item, _Answered):
                    return item.text, [], {"frames": item.frames}
        raise AssertionError("unreachable: a turn ends with its answer or raises")

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """One attempt as a stream: each piece of the answer as its frame arrives, then the
        whole answer (`pipeline.stream()`, `jib chat`)."""
        async with contextlib.aclosing(self._turn(self._context(messages, params), params)) as turn:
            async for item in turn:
                if isinstance(item, str):
                    yield item
                else:
                    message = Message("assistant", item.text)
                    yield GeneratedMessage(message, extra={"frames": item.frames})

    async def _turn(
        self, context: RequestTransformContext, params: GenerateParams
    ) -> AsyncGenerator[str | _Answered, None]:
        """Render, connect (or take the conversation's open connection), send the frame, and
        yield the answer's pieces as their frames arrive, then the whole answer."""
        spec = self.spec
        if spec is None:
            raise ProcessingError("this WSGenerator has no spec: assign .spec (a WSSpec)")
        spec.check_carries(context.messages, params)
        limits = self.render_limits.within(self.request_timeout(params))
        prepared, frame = spec.build_handshake(context, limits)
        sessions = spec.request.connection == "session"
        socket = None
        if sessions:
            socket = await self._parked.take(_conversation_key(context.messages[:-1]))
        if socket is None:
            request = WireRequest("GET", prepared.url, prepared.headers)
            socket = await self.websockets.connect(request, self)
        kept = False
        try:
            await socket.send(frame)
            idle = spec.response.idle_timeout
            in_thread = spec.needs_worker_thread
            pieces: list[str] = []
            size = frames = 0
            while True:
                # Before the answer begins, the request's timeout bounds the wait.
                text = await socket.receive(idle if pieces else None)
                if text is None:  # quiet for idle_timeout seconds once the answer had begun
                    break
                frames += 1
                if in_thread:
                    verdict = await asyncio.to_thread(spec.read_frame, text, context, limits)
                else:
                    verdict = spec.read_frame(text, context, limits)
                if verdict.skipped:
                    continue
                pieces.append(verdict.piece)
                size += len(verdict.piece)
                if size > self.max_response_bytes:
                    raise too_large(self.max_response_bytes)
                if verdict.piece:
                    yield verdict.piece
                if verdict.done:
                    break
            answer = "".join(pieces)
            if sessions:
                answered = [*context.messages, Message("assistant", answer)]
                await self._parked.park(_conversation_key(answered), socket)
                kept = True
            yield _Answered(answer, frames)
        finally:
            if not kept:
                await socket.aclose()


@dataclass(frozen=True, slots=True)
class _Answered:
    """The end of a turn: the whole answer and the frames read for it."""

    text: str
    frames: int


def _conversation_key(messages: Sequence[Message]) -> str:
    """A fingerprint of a conversation so far: the next turn of it finds its connection."""
    data = json.dumps([message.to_dict() for message in messages], sort_keys=True, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class _ParkedSessions(RuntimeResource):
    """Session connections waiting for their conversation's next turn, per event loop."""

    def __init__(self) -> None:
        self._pools: PerLoop[OrderedDict[str, WireSocket]] = PerLoop(OrderedDict, _close_all)

    async def take(self, key: str) -> WireSocket | None:
        """The open connection of the conversation `key` names, taken out of the pool."""
        socket = (await self._pools.get()).pop(key, None)
        if socket is not None and socket.closed:
            return None
        return socket

    async def park(self, key: str, socket: WireSocket) -> None:
        """Keep `socket` open for the conversation `key` names (closing the oldest over the
        cap)."""
        pool = await self._pools.get()
        pool[key] = socket
        while len(pool) > MAX_IDLE_SESSIONS:
            _, oldest = pool.popitem(last=False)
            await oldest.aclose()

    async def aclose(self) -> None:
        """Close the running loop's parked connections."""
        await self._pools.aclose()


async def _close_all(pool: OrderedDict[str, WireSocket]) -> None:
    sockets = list(pool.values())
    pool.clear()
    await asyncio.gather(*(socket.aclose() for socket in sockets))
