"""A hostile model server for the LiteLLM size-bound tests, on 127.0.0.1.

It speaks OpenAI's protocol (`POST …/chat/completions`, `POST …/completions`) and Ollama's
(`POST /api/chat`, `POST /api/generate`), streamed (SSE or NDJSON) or not as the request asks, and
`POST /api/show` (404, so LiteLLM's Ollama client carries on). Any other POST path gets a hostile
answer too, so LiteLLM's other providers can be pointed at it. What it answers is chosen by a word
in the last message or prompt:

- `bomb`: a gzip body of about 1 MB that inflates to 1 GiB (one endless line);
- `line`: one line that never ends (up to 1 GiB, as long as the client reads);
- `big`: a huge plain body (a completion whose text runs to 1 GiB), or for a stream an endless
  run of valid chunks of 500 characters;
- `tiny`: an endless stream of the smallest chunks LiteLLM accepts;
- `declared`: a `Content-Length` of 10 GiB, then a few bytes;
- `br`: a body with `Content-Encoding: br`;
- `under:N`: a normal answer padded to a little under what `max_response_bytes=N` lets through
  (its bytes plus `LINE_BYTES` per line);
- `gzip`, `deflate`, `rawdeflate`: the answer (normal or `under:N`) so encoded (`deflate` with
  its zlib header, `rawdeflate` without); `corrupt`: gzip that does not decode;
- anything else: a normal answer, `echo: <the text>`.

Hostile answers stop when the client closes the connection. The server counts requests by path.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jib.generator.litellm._bounds import LINE_BYTES
from tests.support.json_server import JsonHandler, StatefulServer, serve

GIB = 1 << 30
_PIECE = b"a" * (64 * 1024)
_UNDER = re.compile(r"under:(\d+)")


@dataclass
class HostileState:
    """Requests counted by path."""

    paths: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


_bomb: bytes | None = None
_bomb_lock = threading.Lock()


def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB: a JSON string that never closes (made once)."""
    global _bomb
    with _bomb_lock:
        if _bomb is None:
            compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
            megabyte = b"a" * (1 << 20)
            parts = [compressor.compress(b'{"id": "')]
            parts += [compressor.compress(megabyte) for _ in range(GIB >> 20)]
            _bomb = b"".join([*parts, compressor.flush()])
        return _bomb


def _last_text(body: dict[str, Any]) -> str:
    """The last message's text (in OpenAI's, Ollama's, Anthropic's or Gemini's shape), or the
    prompt."""
    messages = body.get("messages") or body.get("contents")
    if not messages:
        return str(body.get("prompt", ""))
    last = messages[-1]
    content = last.get("content", last.get("parts", ""))
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    elif encoding == "rawdeflate":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


class _Answers:
    """The normal answers of one request, in its protocol."""

    def __init__(self, path: str, body: dict[str, Any]) -> None:
        self.ollama = path.startswith("/api/")
        self.chat = path.endswith(("/chat/completions", "/api/chat"))
        self.stream = bool(body.get("stream", self.ollama))  # Ollama streams unless told not to
        self.model = str(body.get("model", "m"))
        self._count = 0  # chunks numbered so far
        self.text = _last_text(body)

    @property
    def content_type(self) -> str:
        if not self.stream:
            return "application/json"
        return "application/x-ndjson" if self.ollama else "text/event-stream"

    def whole(self, content: str) -> bytes:
        """A complete answer with `content`."""
        if not self.stream:
            return json.dumps(self._complete(content)).encode()
        return self.chunk(content) + self.end()

    def _complete(self, content: str) -> dict[str, Any]:
        if self.ollama:
            done: dict[str, Any] = {"model": self.model, "created_at": "2025-01-01T00:00:00Z"}
            done |= {"done": True, "done_reason": "stop", "prompt_eval_count": 3}
            done["eval_count"] = 2
            if self.chat:
                return done | {"message": {"role": "assistant", "content": content}}
            return done | {"response": content}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if self.chat:
            message = {"role": "assistant", "content": content}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": content, "finish_reason": "stop"}
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": "hostile", "object": kind, "created": 0, "model": self.model} | {
            "choices": [choice],
            "usage": usage,
        }

    def chunk(self, content: str) -> bytes:
        """One streamed piece of text."""
        if self.ollama:
            piece: dict[str, Any] = {"model": self.model, "done": False}
            if self.chat:
                piece["message"] = {"role": "assistant", "content": content}
            else:
                piece["response"] = content
            return json.dumps(piece).encode() + b"\n"
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": {"content": content}}
        else:
            choice = {"index": 0, "text": content}
        data = {"id": "hostile", "object": "chat.completion.chunk", "model": self.model}
        return (
            b"data: "
            + json.dumps(data | {"choices": [choice | {"finish_reason": None}]}).encode()
            + b"\n\n"
        )

    def numbered_chunk(self) -> bytes:
        """A chunk of about 500 characters unlike the one before (LiteLLM stops a stream that
        repeats one chunk)."""
        self._count += 1
        return self.chunk(f"{self._count:010d}" + "a" * 490)

    def tiny_chunk(self) -> bytes:
        """One of the smallest chunks LiteLLM turns into a delta (numbered, so none repeats)."""
        self._count += 1
        if self.ollama:
            key = "message" if self.chat else "response"
            value: Any = {"content": str(self._count)} if self.chat else str(self._count)
            piece = {"model": self.model, key: value, "done": False}
            return json.dumps(piece, separators=(",", ":")).encode() + b"\n"
        field = (
            {"delta": {"content": str(self._count)}} if self.chat else {"text": str(self._count)}
        )
        data = {"choices": [{"index": 0, **field}]}
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def end(self) -> bytes:
        """The stream's last pieces: the stop reason and usage."""
        if self.ollama:
            return json.dumps(self._complete("")).encode() + b"\n"
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        choice |= {"delta": {}} if self.chat else {"text": ""}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        data = {"id": "hostile", "object": "chat.completion.chunk", "model": self.model}
        last = data | {"choices": [choice], "usage": usage}
        return b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"

    def endless_line_start(self) -> bytes:
        if not self.stream:
            return b'{"id": "'
        return b'{"message": {"content": "' if self.ollama else b'data: {"id": "'


class _Handler(JsonHandler):
    server: StatefulServer[HostileState]

    def do_POST(self) -> None:
        body = self.read_json()
        with self.server.state.lock:
            self.server.state.paths[self.path] += 1
        if self.path == "/api/show":
            self.send_json(404, {"error": "model not found"})
            return
        answers = _Answers(self.path, body)
        text = answers.text
        try:
            if "bomb" in text:
                bomb = gzip_bomb()
                self.send_bytes(200, bomb, answers.content_type, {"Content-Encoding": "gzip"})
            elif "line" in text or ("big" in text and not answers.stream):
                self._send_endless(answers.content_type, answers.endless_line_start, None)
            elif "big" in text or "tiny" in text:
                chunk = answers.numbered_chunk if "big" in text else answers.tiny_chunk
                self._send_endless(answers.content_type, None, chunk)
            elif "declared" in text:
                self.send_response(200)
                self.send_header("Content-Type", answers.content_type)
                self.send_header("Content-Length", str(10 * GIB))
                self.end_headers()
                self.wfile.write(b'{"id": "')
                self.close_connection = True
            elif "br" in text.split():
                headers = {"Content-Encoding": "br"}
                self.send_bytes(200, b"\x1b\x00\x00", answers.content_type, headers)
            elif "corrupt" in text:
                headers = {"Content-Encoding": "gzip"}
                self.send_bytes(200, b"\x1f\x8b\x08\x00garbage", answers.content_type, headers)
            else:
                under = _UNDER.search(text)
                data = (
                    answers.whole(f"echo: {text}")
                    if under is None
                    else self._under(answers, int(under.group(1)))
                )
                encoding = next((e for e in ("rawdeflate", "deflate", "gzip") if e in text), None)
                if encoding is None:
                    self.send_bytes(200, data, answers.content_type)
                else:
                    name = "deflate" if encoding == "rawdeflate" else encoding
                    headers = {"Content-Encoding": name}
                    self.send_bytes(200, _encode(data, encoding), answers.content_type, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_endless(
        self,
        content_type: str,
        start: Callable[[], bytes] | None,
        repeat: Callable[[], bytes] | None,
    ) -> None:
        """Up to 1 GiB, close-delimited: `start()` then `_PIECE`s, or `repeat()` over and over."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        if start is not None:
            self.wfile.write(start())
        while sent < GIB:
            piece = _PIECE if repeat is None else repeat()
            self.wfile.write(piece)
            sent += len(piece)

    @staticmethod
    def _under(answers: _Answers, limit: int) -> bytes:
        """A normal answer that counts between `limit` - 4 KiB and `limit` - 1 KiB."""
        target = limit - 1024
        if answers.stream:
            end = answers.end()
            pieces, total = [], _counted(end)
            while total + _counted(piece := answers.numbered_chunk()) <= target:
                pieces.append(piece)
                total += _counted(piece)
            data = b"".join(pieces) + end
        else:
            data = answers.whole("a" * (target - _counted(answers.whole(""))))
        assert limit - 4 * 1024 <= _counted(data) <= target, (_counted(data), limit)
        return data


def _counted(data: bytes) -> int:
    """What `data` counts against `max_response_bytes` on the LiteLLM path."""
    return len(data) + LINE_BYTES * data.count(b"\n")


@dataclass
class RunningHostile:
    """A started hostile server: its origin (`http://127.0.0.1:PORT`) and its state."""

    origin: str
    state: HostileState


@contextmanager
def run_hostile_server() -> Iterator[RunningHostile]:
    """Serve the hostile server on a free port of 127.0.0.1 until the block ends."""
    state = HostileState()
    with serve(_Handler, state) as port:
        yield RunningHostile(f"http://127.0.0.1:{port}", state)
