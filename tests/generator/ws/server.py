"""A real WebSocket chatbot for `ws!`'s tests and docs examples (an aiohttp web app).

Run it by hand to try the examples in `docs/providers/ws.md`:

    python -m tests.generator.ws.server        # serves ws://127.0.0.1:8766
    python -m tests.generator.ws.server 9000   # or on another port

The tests run it on a free port in a thread (`serve_ws`, `ensure_ws_example_server`).

Routes (each a WebSocket; every answer is "You said: <text>", split over several frames):

- `/chat`: JSON frames. Takes `{"text": …}`; sends `{"type": "typing"}`, the answer as
  `{"type": "chunk", "text": …}` pieces (a `{"type": "ack"}` and a ping among them), then
  `{"type": "end"}`. `?drop=N`: every Nth connection is cut (no close frame) half-way through
  its answer.
- `/marker`: plain text. Takes the prompt as text; sends `...` (typing), then the answer in
  pieces, the last ending with `[END]`.
- `/idle`: plain text. Sends the answer in pieces and then nothing (the connection stays open).
- `/session`: plain text; the server keeps the conversation per connection and answers
  "turn N: You said: <text>" then `[END]`.
- `/auth`: as `/marker`, but the handshake needs `Authorization: Bearer s3cret-token-abcdef`
  (401 otherwise).
- `/redirect?to=URL`: the handshake answers 307 to `URL`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.docs_ports import WS_EXAMPLE_PORT

SECRET_TOKEN = "s3cret-token-abcdef"


@dataclass
class WSServerState:
    """What the server remembers; tests reset and inspect it."""

    connections: int = 0
    dropped: int = 0
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget everything."""
        with self.lock:
            self.connections = 0
            self.dropped = 0
            self.handshakes.clear()
            self.received.clear()


def _pieces(answer: str, size: int = 4) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


def make_app(state: WSServerState) -> web.Application:
    """The chatbot's app."""

    async def opened(request: web.Request) -> tuple[web.WebSocketResponse, int]:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with state.lock:
            state.connections += 1
            number = state.connections
            state.handshakes.append({"path": request.path, "headers": dict(request.headers)})
        return ws, number

    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws, number = await opened(request)
        drop_every = int(request.query.get("drop", "0"))
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            text = message.json()["text"]
            with state.lock:
                state.received.append(text)
            await ws.send_json({"type": "typing"})
            pieces = _pieces(f"You said: {text}")
            for index, piece in enumerate(pieces):
                if drop_every and number % drop_every == 0 and index == len(pieces) // 2:
                    with state.lock:
                        state.dropped += 1
                    assert request.transport is not None
                    request.transport.abort()  # no close frame: the connection just breaks
                    return ws
                await ws.send_json({"type": "chunk", "text": piece})
                if index == 1:
                    await ws.send_json({"type": "ack"})
                    await ws.ping()
                await asyncio.sleep(0)
            await ws.send_json({"type": "end"})
        return ws

    async def marker(request: web.Request) -> web.WebSocketResponse:
        ws, _ = await opened(request)
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            with state.lock:
                state.received.append(message.data)
            await ws.send_str("...")
            pieces = _pieces(f"You said: {message.data}")
            pieces[-1] += "[END]"
            for piece in pieces:
                await ws.send_str(piece)
        return ws

    async def idle(request: web.Request) -> web.WebSocketResponse:
        ws, _ = await opened(request)
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            for piece in _pieces(f"You said: {message.data}"):
                await ws.send_str(piece)
        return ws

    async def session(request: web.Request) -> web.WebSocketResponse:
        ws, _ = await opened(request)
        turns = 0
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            turns += 1
            with state.lock:
                state.received.append(message.data)
            await ws.send_str(f"turn {turns}: You said: {message.data}[END]")
        return ws

    async def auth(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {SECRET_TOKEN}":
            with state.lock:
                state.handshakes.append({"path": request.path, "headers": dict(request.headers)})
            return web.Response(status=401, text="bad token")
        return await marker(request)

    async def redirect(request: web.Request) -> web.StreamResponse:
        with state.lock:
            state.handshakes.append({"path": request.path, "headers": dict(request.headers)})
        raise web.HTTPTemporaryRedirect(request.query["to"])

    app = web.Application()
    app.add_routes(
        [
            web.get("/chat", chat),
            web.get("/marker", marker),
            web.get("/idle", idle),
            web.get("/session", session),
            web.get("/auth", auth),
            web.get("/redirect", redirect),
        ]
    )
    return app


@dataclass
class RunningWSServer:
    """A server running in a thread: its `url` (`ws://127.0.0.1:PORT`) and `state`."""

    url: str
    state: WSServerState


@contextmanager
def serve_ws(
    port: int = 0, *, tls: bool = False, ssl_context: ssl.SSLContext | None = None
) -> Iterator[RunningWSServer]:
    """Run the chatbot on 127.0.0.1 (a free port by default) in a daemon thread; with `tls`,
    as `wss://` with the test CA's certificate (`tests/support/tls`), or with `ssl_context`
    (one that asks for client certificates, say)."""
    if ssl_context is None and tls:
        ssl_context = _server_tls()
    state = WSServerState()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(make_app(state), shutdown_timeout=0.5)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        scheme = "wss" if ssl_context is not None else "ws"
        yield RunningWSServer(f"{scheme}://127.0.0.1:{sock.getsockname()[1]}", state)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def _server_tls() -> ssl.SSLContext:
    from tests.support.forward_proxy import TLS_DIR

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    return context


_example_lock = threading.Lock()
_example_server: RunningWSServer | None = None
_example_context: Any = None  # kept: a collected context manager would stop the server


def ensure_ws_example_server() -> RunningWSServer:
    """Start the docs examples' WebSocket server on a free port once per process; return it.

    The docs name `ws://127.0.0.1:8766`; tests rewrite that to this server's `url`.
    """
    global _example_server, _example_context
    with _example_lock:
        if _example_server is None:
            _example_context = serve_ws()
            _example_server = _example_context.__enter__()
        return _example_server


if __name__ == "__main__":
    with serve_ws(int(sys.argv[1]) if len(sys.argv) > 1 else WS_EXAMPLE_PORT) as running:
        print(f"serving on {running.url}; Ctrl-C to stop")
        threading.Event().wait()
