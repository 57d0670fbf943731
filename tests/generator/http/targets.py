"""Real targets for `http!`'s steps, sessions and streams (routes of the example server).

- `GET /bot/login`: a login page; sets a `pre` cookie and puts a CSRF token in the form
  (`<input type="hidden" name="csrf" value="…">`).
- `POST /bot/login`: the form (`username`, `password=hunter2`, `csrf`, with the `pre` cookie);
  answers 303 to `/bot/home` with `Set-Cookie: sid=…` (403 for a wrong password or token).
- `GET /bot/home`: the page after logging in (needs the `sid` cookie).
- `POST /bot/chat`: `{"message"}` with the `sid` cookie and `X-CSRF-Token` of that login;
  answers `{"reply": "Bot: <message>"}`, or 401 once the session expired (`expire()`).
- `POST /bot/conv`: `{"conversation_id", "messages"}`; an empty id starts a conversation the
  server keeps; answers `{"conversation_id", "reply": "turn N: <last message> (K kept)"}`,
  K the messages it keeps.
- `POST /bot/sse`, `POST /bot/ndjson`: `{"message"}`; stream "You said: <message>" in three
  pieces (server-sent events in OpenAI's chunk shape, or `{"delta"}` lines). With
  `hold_last` set, the last piece waits until `release` is set (at most 120 s).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

__all__ = ["TargetState", "target_routes"]

PASSWORD = "hunter2"


@dataclass
class TargetState:
    """What the target bots remember; tests reset and inspect it."""

    csrf_by_pre: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    """Live sessions: sid → the CSRF token of that login."""
    logins: int = 0
    login_pages: int = 0
    chats: list[dict[str, Any]] = field(default_factory=list)
    conversations: dict[str, list[Any]] = field(default_factory=dict)
    turns: list[dict[str, Any]] = field(default_factory=list)
    hold_last: bool = False
    expire_after: int | None = None
    """Expire every session once this many chats were answered (once)."""
    answered: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    last_sent: threading.Event = field(default_factory=threading.Event)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        """Forget everything (a fresh target)."""
        self.csrf_by_pre.clear()
        self.sessions.clear()
        self.logins = self.login_pages = 0
        self.chats.clear()
        self.conversations.clear()
        self.turns.clear()
        self.hold_last = False
        self.expire_after = None
        self.answered = 0
        self.release = threading.Event()
        self.last_sent = threading.Event()

    def expire(self) -> None:
        """Every session expires: the next chat request gets a 401."""
        self.sessions.clear()


def target_routes(state: TargetState) -> list[Route]:
    """The routes of the target bots, sharing `state`."""

    async def login_page(request: Request) -> Response:
        state.login_pages += 1
        number = next(state.counter)
        pre, csrf = f"pre-{number}", f"csrf-{number:04d}-tok"
        state.csrf_by_pre[pre] = csrf
        page = (
            "<html><body><form method='post' action='/bot/login'>"
            f'<input type="hidden" name="csrf" value="{csrf}">'
            "<input name='username'><input name='password' type='password'>"
            "</form></body></html>"
        )
        response = HTMLResponse(page)
        response.set_cookie("pre", pre, httponly=True)
        return response

    async def login(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        pre = request.cookies.get("pre", "")
        expected = state.csrf_by_pre.get(pre)
        if expected is None or form.get("csrf") != expected or form.get("password") != PASSWORD:
            return PlainTextResponse("login refused", 403)
        await asyncio.sleep(0.05)  # a login takes a moment, so concurrent 401s pile up
        state.logins += 1
        sid = f"sid-{next(state.counter):06d}-secret"
        state.sessions[sid] = expected
        response = RedirectResponse("/bot/home", status_code=303)
        response.set_cookie("sid", sid, httponly=True)
        return response

    async def home(request: Request) -> Response:
        if request.cookies.get("sid") not in state.sessions:
            return PlainTextResponse("not logged in", 401)
        return HTMLResponse("<html>welcome</html>")

    async def chat(request: Request) -> Response:
        payload = json.loads(await request.body())
        sid = request.cookies.get("sid", "")
        state.chats.append(
            {"sid": sid, "csrf": request.headers.get("x-csrf-token"), "cookies": request.cookies}
        )
        csrf = state.sessions.get(sid)
        if csrf is None or request.headers.get("x-csrf-token") != csrf:
            return JSONResponse({"error": "session expired"}, 401)
        state.answered += 1
        if state.answered == state.expire_after:
            state.expire()
        return JSONResponse({"reply": f"Bot: {payload['message']}"})

    async def conversation(request: Request) -> Response:
        payload = json.loads(await request.body())
        conversation_id = payload.get("conversation_id") or ""
        messages = payload.get("messages", [])
        state.turns.append({"conversation_id": conversation_id, "messages": messages})
        if not conversation_id:
            conversation_id = f"conv-{next(state.counter)}"
            state.conversations[conversation_id] = []
        elif conversation_id not in state.conversations:
            return JSONResponse({"error": f"unknown conversation {conversation_id}"}, 404)
        kept = state.conversations[conversation_id]
        kept.extend(messages)
        turn = sum(1 for message in kept if message.get("role") == "user")
        last = messages[-1]["content"] if messages else ""
        reply = f"turn {turn}: {last} ({len(kept)} kept)"
        kept.append({"role": "assistant", "content": reply})
        return JSONResponse({"conversation_id": conversation_id, "reply": reply})

    def pieces_of(message: str) -> list[str]:
        return ["You ", "said: ", message]

    async def held(last: bool) -> None:
        if last and state.hold_last:
            for _ in range(12000):
                if state.release.is_set():
                    break
                await asyncio.sleep(0.01)
        if last:
            state.last_sent.set()

    async def sse(request: Request) -> Response:
        message = json.loads(await request.body())["message"]
        pieces = pieces_of(message)

        async def events() -> AsyncIterator[bytes]:
            yield b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
            for index, piece in enumerate(pieces):
                await held(index == len(pieces) - 1)
                chunk = {"choices": [{"delta": {"content": piece}}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def ndjson(request: Request) -> Response:
        message = json.loads(await request.body())["message"]
        pieces = pieces_of(message)

        async def lines() -> AsyncIterator[bytes]:
            for index, piece in enumerate(pieces):
                await held(index == len(pieces) - 1)
                yield (json.dumps({"delta": piece}) + "\n").encode()
            yield b'{"done": true}\n'

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return [
        Route("/bot/login", login_page, methods=["GET"]),
        Route("/bot/login", login, methods=["POST"]),
        Route("/bot/home", home, methods=["GET"]),
        Route("/bot/chat", chat, methods=["POST"]),
        Route("/bot/conv", conversation, methods=["POST"]),
        Route("/bot/sse", sse, methods=["POST"]),
        Route("/bot/ndjson", ndjson, methods=["POST"]),
    ]
