"""A server that speaks Ollama's HTTP API, for tests: Ollama itself cannot be installed here.

It answers `POST /api/chat` and `POST /api/generate` (streamed as NDJSON or not, as asked) with
the same JSON fields Ollama sends, including `prompt_eval_count` (input tokens) and `eval_count`
(output tokens), plus `GET /api/tags`, `GET /api/version` and `POST /api/show`.

Answers echo the prompt's words. `options.num_predict` cuts them (`done_reason: "length"`).
Input tokens are counted as Ollama would for a word-level model: the prompt's words plus a few
template tokens per message. Set `state.truncate_to = N` to behave like Ollama with a context
window of N tokens: it then reports at most N input tokens, silently, as Ollama does.
Run it by hand with `python -m tests.support.ollama_server [PORT]` (default 11434).

A prompt holding `fail:NNN` (429, 500, ...) gets that HTTP status with Ollama's error JSON
(`{"error": "..."}`), for checking how errors arrive through LiteLLM's Ollama clients.
The server records every request's path, body and headers.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_server import JsonHandler, StatefulServer, serve

TEMPLATE_TOKENS_PER_MESSAGE = 3
_FAULT = re.compile(r"fail:(\d{3})")


@dataclass
class OllamaState:
    """What the server saw, and how it behaves; shared with the handler threads."""

    truncate_to: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # names lowercased
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, *, truncate_to: int | None = None) -> None:
        """Forget what was recorded and set how many input tokens fit."""
        with self.lock:
            self.truncate_to = truncate_to
            self.requests.clear()
            self.paths.clear()
            self.headers.clear()


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


class _Handler(JsonHandler):
    server: StatefulServer[OllamaState]

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self.send_json(status, payload, content_type="application/json; charset=utf-8")

    def _send_stream(self, chunks: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(chunk).encode() + b"\n" for chunk in chunks)
        self.send_bytes(200, data, "application/x-ndjson")

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._send_json(200, {"version": "0.12.0"})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [{"name": "tiny:latest", "model": "tiny:latest"}]})
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        body = self.read_json()
        state = self.server.state
        with state.lock:
            state.requests.append(body)
            state.paths.append(self.path)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/api/show":
            self._send_json(
                200,
                {
                    "template": "{{ .Prompt }}",
                    "details": {"family": "llama", "parameter_size": "1M"},
                    "model_info": {"general.architecture": "llama", "llama.context_length": 2048},
                    "capabilities": ["completion"],
                },
            )
        elif self.path in ("/api/chat", "/api/generate"):
            self._generate(body, chat=self.path == "/api/chat")
        else:
            self._send_json(404, {"error": f"unknown path {self.path}"})

    def _generate(self, body: dict[str, Any], *, chat: bool) -> None:
        if "model" not in body:
            self._send_json(400, {"error": "model is required"})
            return
        if chat:
            messages = body.get("messages") or []
            text = " ".join(str(m.get("content", "")) for m in messages)
            prompt_tokens = len(text.split()) + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
        else:
            text = str(body.get("prompt", ""))
            prompt_tokens = len(text.split()) + TEMPLATE_TOKENS_PER_MESSAGE
        fault = _FAULT.search(text)
        if fault:
            status = int(fault.group(1))
            # The text names no status, so only the HTTP status itself can classify the error.
            self._send_json(status, {"error": "injected failure"})
            return
        truncate_to = self.server.state.truncate_to
        if truncate_to is not None and prompt_tokens > truncate_to:
            prompt_tokens = truncate_to  # Ollama keeps the end of the prompt and says nothing
        words = text.split()
        options = body.get("options") or {}
        limit = options.get("num_predict")
        done_reason = "stop"
        if isinstance(limit, int) and limit >= 0 and len(words) > limit:
            words, done_reason = words[:limit], "length"
        answer = " ".join(words)
        final: dict[str, Any] = {
            "model": body["model"],
            "created_at": _timestamp(),
            "done": True,
            "done_reason": done_reason,
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 200_000,
            "eval_count": len(words),
            "eval_duration": 300_000,
        }
        if chat:
            final["message"] = {"role": "assistant", "content": answer}
        else:
            final["response"] = answer
            final["context"] = [1, 2, 3]
        if body.get("stream", True):
            first: dict[str, Any] = {
                "model": body["model"],
                "created_at": _timestamp(),
                "done": False,
            }
            if chat:
                first["message"] = {"role": "assistant", "content": answer}
                final["message"] = {"role": "assistant", "content": ""}
            else:
                first["response"] = answer
                final["response"] = ""
            self._send_stream([first, final])
        else:
            self._send_json(200, final)


@dataclass
class RunningOllama:
    """A started server: its base URL (what `api_base` takes) and its `state`."""

    url: str
    state: OllamaState


@contextmanager
def run_ollama_server(port: int = 0) -> Iterator[RunningOllama]:
    """Serve the Ollama protocol on 127.0.0.1 until the block ends (`port` 0: a free one)."""
    state = OllamaState()
    with serve(_Handler, state, port) as bound:
        yield RunningOllama(f"http://127.0.0.1:{bound}", state)


if __name__ == "__main__":
    # By hand: `python -m tests.support.ollama_server [PORT]` (11434, Ollama's own port).
    with run_ollama_server(int(sys.argv[1]) if len(sys.argv) > 1 else 11434) as running:
        print(f"Ollama protocol at {running.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
