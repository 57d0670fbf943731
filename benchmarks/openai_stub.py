"""A fast local OpenAI-compatible server for benchmarks: constant answers, nothing else.

    python benchmarks/openai_stub.py [--port 0] [--chunk-delay-ms 50]

Prints `listening on http://127.0.0.1:PORT` once it accepts connections, then serves until
killed. It is a raw asyncio protocol with a minimal HTTP/1.1 parser (keep-alive, bodies with a
`Content-Length`): measured on one machine it spends a quarter or less of what an `aiohttp.web` app
spends per request, so the clients being compared, not the server, set the pace.

Routes:

- `POST /v1/chat/completions` and `POST /v1/completions`: a constant answer ("Hello from the
  stub."), as JSON, or as server-sent events when the body says `"stream": true` (one
  `data: {...}` chunk per word, then a final chunk with the stop reason, a usage chunk when
  `stream_options.include_usage` is true, and `data: [DONE]`). Usage is always 5 + 4 tokens.
  Bodies up to 16 MiB are read (a chat carrying a 1 MiB image is 1.4 MB of JSON) and parsed
  whole, so a body that is not JSON is refused.
- A model named `slow-stream` (or `slow-stream-MS`) streams slowly: the first chunk at once,
  then one chunk every `--chunk-delay-ms` (or `MS`) milliseconds. The server records the
  `time.monotonic()` at which it wrote each slow stream's first chunk to its socket, keyed by
  the request's last message (or prompt), so a client can measure the time from the server's
  send to its own receipt: `CLOCK_MONOTONIC` is one clock for every process on a Linux machine.
- A model named `delay-MS` answers a plain (not streamed) request after MS milliseconds, as a
  model that takes time would (the connection answers nothing else meanwhile).
- `GET /stub/first-chunks`: `{key: monotonic_send_time}` of the slow streams so far.
- `GET /stub/stats`: `{"requests": n, "completions": n, "completion_bytes": …, "cpu_s": …}`:
  requests of any route; completion requests and their bodies' bytes (to check what a client
  sent); the server's own CPU time, to check that it is not the bottleneck. `POST /stub/reset`
  clears the counts and the first chunks.

Anything else gets an OpenAI-style JSON error (404, 405, 400 for a body that is not JSON, 411
without a `Content-Length`). Only the standard library is imported, so the peers venv can run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from typing import Any

ANSWER_WORDS = ["Hello", " from", " the", " stub."]
ANSWER = "".join(ANSWER_WORDS)
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
CREATED = 1_700_000_000
SLOW_MODEL = re.compile(r"^slow-stream(?:-(\d+))?$")
DELAY_MODEL = re.compile(r"^delay-(\d+)$")
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {411: "Length Required", 413: "Content Too Large"}


class Stats:
    """What the server counted since start or the last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.completions = 0
        self.completion_bytes = 0
        self.first_chunks: dict[str, float] = {}

    def reset(self) -> None:
        self.requests = self.completions = self.completion_bytes = 0
        self.first_chunks.clear()

    def counts(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "completions": self.completions,
            "completion_bytes": self.completion_bytes,
        }


# --- responses ---------------------------------------------------------------------------------


def response_head(status: int, content_type: str, length: int | None) -> bytes:
    """A status line and headers: a `Content-Length` when known, else chunked encoding."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()


def json_response(status: int, body: Any) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return response_head(status, "application/json", len(payload)) + payload


def error_response(status: int, message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "code": None, "param": None}
    return json_response(status, {"error": error})


def completion_body(chat: bool, model: str) -> dict[str, Any]:
    """The whole answer, as `/v1/chat/completions` or `/v1/completions` returns it."""
    if chat:
        message = {"role": "assistant", "content": ANSWER}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": None}
        kind = "text_completion"
    return {
        "id": "stub-1",
        "object": kind,
        "created": CREATED,
        "model": model,
        "choices": [choice],
        "usage": USAGE,
    }


def stream_events(chat: bool, model: str, include_usage: bool) -> list[bytes]:
    """Every server-sent event of a streamed answer, each framed as one HTTP chunk."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": "stub-1", "object": kind, "created": CREATED, "model": model}

    def choice(text: str | None, finish: str | None, first: bool) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if first:
            delta["role"] = "assistant"
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    chunks = [
        {**base, "choices": [choice(word, None, first=index == 0)]}
        for index, word in enumerate(ANSWER_WORDS)
    ]
    chunks.append({**base, "choices": [choice(None, "stop", first=False)]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": USAGE})
    events = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in chunks]
    events.append("data: [DONE]\n\n")
    return [http_chunk(event.encode()) for event in events] + [b"0\r\n\r\n"]


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Answers:
    """Encoded answers, built once per (route, model, stream options) and reused."""

    def __init__(self) -> None:
        self._plain: dict[tuple[bool, str], bytes] = {}
        self._streams: dict[tuple[bool, str, bool], list[bytes]] = {}

    def plain(self, chat: bool, model: str) -> bytes:
        key = (chat, model)
        found = self._plain.get(key)
        if found is None:
            found = self._plain[key] = json_response(200, completion_body(chat, model))
        return found

    def stream(self, chat: bool, model: str, include_usage: bool) -> list[bytes]:
        key = (chat, model, include_usage)
        found = self._streams.get(key)
        if found is None:
            found = self._streams[key] = stream_events(chat, model, include_usage)
        return found


# --- the protocol ------------------------------------------------------------------------------


class StubProtocol(asyncio.Protocol):
    """One client connection: parse requests in order, answer each."""

    def __init__(self, stats: Stats, answers: Answers, chunk_delay: float) -> None:
        self.stats = stats
        self.answers = answers
        self.chunk_delay = chunk_delay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a slow stream is being written; later requests wait in the buffer
        self.close_when_done = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while not self.busy and not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.fail(413, "request head too large")
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, _, rest = head[0].partition(" ")
            path = rest.partition(" ")[0]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length_text = headers.get("content-length")
            if length_text is None and (method == "POST" or "transfer-encoding" in headers):
                self.fail(411, "send the request body with a Content-Length header")
                return
            length = int(length_text or 0)
            if length > MAX_BODY:
                self.fail(413, f"request body over {MAX_BODY} bytes")
                return
            if len(self.buffer) < end + 4 + length:
                return
            with memoryview(self.buffer) as view:  # one copy of a large body, not two
                body = bytes(view[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.stats.requests += 1
            self.close_when_done = headers.get("connection", "").lower() == "close"
            self.respond(method, path, body)
            if self.close_when_done and not self.busy:
                self.close()

    def fail(self, status: int, message: str) -> None:
        assert self.transport is not None
        self.transport.write(error_response(status, message))
        self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def respond(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        write = self.transport.write
        route = path.partition("?")[0]
        if route in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                write(error_response(405, f"{route} takes POST, not {method}"))
                return
            self.stats.completions += 1
            self.stats.completion_bytes += len(body)
            self.complete(route == "/v1/chat/completions", body)
        elif route == "/stub/stats" and method == "GET":
            write(json_response(200, {**self.stats.counts(), "cpu_s": cpu_seconds()}))
        elif route == "/stub/first-chunks" and method == "GET":
            write(json_response(200, self.stats.first_chunks))
        elif route == "/stub/reset" and method == "POST":
            self.stats.reset()
            write(json_response(200, {"reset": True}))
        else:
            write(error_response(404, f"no route {method} {route}"))

    def complete(self, chat: bool, body: bytes) -> None:
        assert self.transport is not None
        try:
            request = json.loads(body)
            model = str(request.get("model", ""))
        except (ValueError, AttributeError):
            self.transport.write(error_response(400, "the request body is not a JSON object"))
            return
        if not request.get("stream"):
            delayed = DELAY_MODEL.match(model)
            if delayed is None:
                self.transport.write(self.answers.plain(chat, model))
                return
            self.busy = True
            answer = self.answers.plain(chat, model)
            delay = int(delayed.group(1)) / 1000
            asyncio.get_running_loop().create_task(self.trickle([answer], delay))
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        events = self.answers.stream(chat, model, include_usage)
        head = response_head(200, "text/event-stream", None)
        slow = SLOW_MODEL.match(model)
        if slow is None:
            self.transport.write(head + b"".join(events))
            return
        delay = int(slow.group(1)) / 1000 if slow.group(1) else self.chunk_delay
        # Taken before the write: a send time after it could follow the client's receipt.
        self.stats.first_chunks[request_key(request, chat)] = time.monotonic()
        self.transport.write(head + events[0])
        self.busy = True
        asyncio.get_running_loop().create_task(self.trickle(events[1:], delay))

    async def trickle(self, events: list[bytes], delay: float) -> None:
        """Write the rest of a slow stream, one chunk per `delay`, then go on parsing."""
        try:
            for event in events:
                await asyncio.sleep(delay)
                if self.closing or self.transport is None:
                    return
                self.transport.write(event)
        finally:
            self.busy = False
        if self.close_when_done:
            self.close()
        self.process()


def request_key(request: dict[str, Any], chat: bool) -> str:
    """The last message's content (chat) or the prompt (completions), as sent."""
    if chat:
        messages = request.get("messages") or [{}]
        content = messages[-1].get("content", "")
        if isinstance(content, list):  # content parts: the text of the first
            content = next((part.get("text", "") for part in content), "")
        return str(content)
    prompt = request.get("prompt", "")
    return str(prompt[0] if isinstance(prompt, list) and prompt else prompt)


def cpu_seconds() -> float:
    return time.process_time()


async def serve(port: int, chunk_delay_ms: float) -> None:
    stats, answers = Stats(), Answers()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StubProtocol(stats, answers, chunk_delay_ms / 1000),
        "127.0.0.1",
        port,
        backlog=1024,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=50.0, help="between chunks of a slow stream"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.chunk_delay_ms))


if __name__ == "__main__":
    main()
