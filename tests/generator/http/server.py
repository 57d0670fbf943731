"""A real HTTP server for the HTTP generator's tests and docs examples (starlette + uvicorn).

Run it by hand to try the examples in `docs/providers/http.md`:

    python -m tests.generator.http.server        # serves http://127.0.0.1:8765
    python -m tests.generator.http.server 9000   # or on another port

The tests run it on a free port instead (`ensure_example_server`) and move the examples' URLs
to that port (`tests.support.docs_ports`).

Endpoints (all JSON unless said otherwise):

- `POST /v1/chat/completions`: OpenAI-style chat; answers "You said: <last message>" (its
  text, and `[image_url]` for each part that is not text). Given `tools`, it calls the first
  one with `{"text": <last message>}`; after a `tool` message it answers "The tool said: …".
- `POST /secure/chat`: the same, but needs `Authorization: Bearer <the current token>`.
- `POST /token`: issues a new access token (the previous one stops working).
- `POST /session/chat`: `{"session": …, "message": …}`; an empty session starts one.
- `POST /text`: plain text in, `Answer: <TEXT IN CAPITALS>` out.
- `POST /echo`: the request body back, as JSON, with the headers received.
- `GET|POST /flaky/{name}`: 429 with `Retry-After` the first time, then OK.
- `GET|POST /status/{code}`: answers with that status (`?body=` sets the body).
- `POST /malformed`, `/big?n=`, `/big-stream?n=`, `/redirect?to=&status=`, `/headers`,
  `/leak?status=` (an error whose body repeats the `Authorization` header), `/slow` (answers
  after 50 ms; `?together=N`: once N requests have been in flight at once, at most 30 s).
- `/bot/…`: a chatbot behind a form login, one that keeps the conversation, and streaming ones
  (see `tests.generator.http.targets`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.generator.http.targets import TargetState, target_routes
from tests.support.docs_ports import HTTP_EXAMPLE_PORT


@dataclass
class ServerState:
    """What the server remembers between requests; tests reset and inspect it."""

    token: str = "token-0"
    token_requests: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    targets: TargetState = field(default_factory=TargetState)

    def reset(self) -> None:
        """Forget everything (a fresh server)."""
        self.in_flight = self.max_in_flight = 0
        self.token = "token-0"
        self.token_requests = 0
        self.sessions.clear()
        self.hits.clear()
        self.requests.clear()
        self.targets.reset()

    def hit(self, key: str) -> int:
        """Count one more request for `key`; return the count."""
        self.hits[key] = self.hits.get(key, 0) + 1
        return self.hits[key]


def _reply(content: str, model: str = "echo") -> dict[str, Any]:
    return {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": content}}],
    }


def _text_of(content: Any) -> str:
    """A message's text: a string as it is; of parts, the texts and a `[type]` for the rest."""
    if isinstance(content, str):
        return content
    return " ".join(
        part["text"] if part.get("type") == "text" else f"[{part.get('type')}]" for part in content
    )


def _tool_reply(name: str, arguments: dict[str, Any], model: str) -> dict[str, Any]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return {
        "model": model,
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
    }


def build_app(state: ServerState) -> Starlette:
    """The test server's application, recording requests in `state`."""

    async def record(request: Request) -> bytes:
        body = await request.body()
        state.requests.append(
            {
                "path": request.url.path,
                "query": request.url.query,
                "method": request.method,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
                "client_port": request.client.port if request.client else None,
                "time": time.monotonic(),
            }
        )
        return body

    async def chat(request: Request) -> Response:
        payload = json.loads(await record(request))
        model = payload.get("model", "echo")
        last = payload["messages"][-1]
        if last.get("role") == "tool":
            return JSONResponse(_reply(f"The tool said: {_text_of(last['content'])}", model))
        if payload.get("tools"):
            name = payload["tools"][0]["function"]["name"]
            return JSONResponse(_tool_reply(name, {"text": _text_of(last["content"])}, model))
        return JSONResponse(_reply(f"You said: {_text_of(last['content'])}", model))

    async def secure_chat(request: Request) -> Response:
        payload = json.loads(await record(request))
        if request.headers.get("authorization") != f"Bearer {state.token}":
            return JSONResponse({"error": {"message": "token expired or invalid"}}, 401)
        last = payload["messages"][-1]["content"]
        return JSONResponse(_reply(f"Hello {last}, you are signed in"))

    async def token(request: Request) -> Response:
        await record(request)
        state.token_requests += 1
        state.token = f"token-{state.token_requests}"
        await asyncio.sleep(0.05)  # a refresh takes a moment, so concurrent 401s pile up
        return JSONResponse({"access_token": state.token})

    async def session_chat(request: Request) -> Response:
        payload = json.loads(await record(request))
        session = payload.get("session") or ""
        if not session:
            session = f"session-{len(state.sessions) + 1}"
            state.sessions[session] = 0
        elif session not in state.sessions:
            return JSONResponse({"error": {"message": f"unknown session {session}"}}, 404)
        state.sessions[session] += 1
        turn = state.sessions[session]
        return JSONResponse({"session_id": session, "reply": f"turn {turn}: {payload['message']}"})

    async def text(request: Request) -> Response:
        body = (await record(request)).decode("utf-8")
        return PlainTextResponse(f"Answer: {body.upper()}\nEND")

    async def echo(request: Request) -> Response:
        body = await record(request)
        return JSONResponse({"body": json.loads(body or b"null"), "headers": dict(request.headers)})

    async def flaky(request: Request) -> Response:
        await record(request)
        if state.hit(request.url.path) == 1:
            retry_after = request.query_params.get("retry_after", "1")
            return JSONResponse(
                {"error": {"message": "slow down"}}, 429, headers={"Retry-After": retry_after}
            )
        return JSONResponse(_reply("finally"))

    async def status(request: Request) -> Response:
        await record(request)
        state.hit(request.url.path)
        code = int(request.path_params["code"])
        body = request.query_params.get("body", f"status {code} body")
        return PlainTextResponse(body, code)

    async def malformed(request: Request) -> Response:
        await record(request)
        return Response('{"choices": [ {"message": ', 200, media_type="application/json")

    async def big(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("x" * int(request.query_params.get("n", "1000")))

    async def big_stream(request: Request) -> Response:
        await record(request)
        size = int(request.query_params.get("n", "1000"))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // 1000):
                yield b"y" * 1000

        return StreamingResponse(chunks(), media_type="text/plain")

    async def redirect(request: Request) -> Response:
        await record(request)
        code = int(request.query_params.get("status", "307"))
        return Response(status_code=code, headers={"Location": request.query_params["to"]})

    async def headers(request: Request) -> Response:
        body = await record(request)
        return JSONResponse(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            },
            headers={
                "Set-Cookie": "sid=secret-cookie",
                "X-Auth-Token": "secret-token",
                "Authorization": "Bearer secret-authorization",
                "Cookie": "c=secret-cookie-header",
                "X-Request-Id": "req-1",
            },
        )

    async def leak(request: Request) -> Response:
        await record(request)
        code = int(request.query_params.get("status", "500"))
        return PlainTextResponse(f"bad credentials: {request.headers.get('authorization')}", code)

    async def slow(request: Request) -> Response:
        await record(request)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        together = int(request.query_params.get("together", "0"))
        try:
            if not together:
                await asyncio.sleep(0.05)
            for _ in range(3000):  # a busy machine sends slowly: wait for the count, not a time
                if state.max_in_flight >= together:
                    break
                await asyncio.sleep(0.01)
        finally:
            state.in_flight -= 1
        return PlainTextResponse("done")

    methods = ["GET", "POST"]
    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/secure/chat", secure_chat, methods=["POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/session/chat", session_chat, methods=["POST"]),
        Route("/text", text, methods=["POST"]),
        Route("/echo", echo, methods=["POST"]),
        Route("/flaky/{name}", flaky, methods=methods),
        Route("/status/{code:int}", status, methods=methods),
        Route("/malformed", malformed, methods=methods),
        Route("/big", big, methods=methods),
        Route("/big-stream", big_stream, methods=methods),
        Route("/redirect", redirect, methods=methods),
        Route("/headers", headers, methods=methods),
        Route("/leak", leak, methods=methods),
        Route("/slow", slow, methods=methods),
        *target_routes(state.targets),
    ]
    return Starlette(routes=routes)


@dataclass
class RunningServer:
    """A server running in a background thread."""

    url: str
    state: ServerState


@contextmanager
def serve(port: int = 0) -> Iterator[RunningServer]:
    """Run the app with uvicorn on 127.0.0.1 (`port=0` picks a free port) until the block ends."""
    state = ServerState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        build_app(state), log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("the test server failed to start")
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("the test server did not start within 5s")
        yield RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


_example_server: RunningServer | None = None
_example_context: Any = None  # kept referenced: collecting it would stop the server
_example_lock = threading.Lock()


def ensure_example_server() -> RunningServer:
    """Start the docs examples' server on a free port of 127.0.0.1 once per process; return it.

    It runs in a daemon thread until the process exits, so every docs test can share it. The
    docs name `http://127.0.0.1:8765`; tests rewrite that to this server's `url`.
    """
    global _example_server, _example_context
    with _example_lock:
        if _example_server is None:
            _example_context = serve()
            _example_server = _example_context.__enter__()
        return _example_server


if __name__ == "__main__":
    with serve(int(sys.argv[1]) if len(sys.argv) > 1 else HTTP_EXAMPLE_PORT) as running:
        print(f"serving on {running.url}; Ctrl-C to stop")
        threading.Event().wait()
