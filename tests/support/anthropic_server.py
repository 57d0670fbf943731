"""A server that speaks Anthropic's Messages API, for tests: Anthropic cannot be reached from here.

`POST /v1/messages`, answered as JSON or, with `"stream": true`, as Anthropic's server-sent
events (`message_start`, `content_block_start`/`_delta`/`_stop` with `text_delta` and
`input_json_delta`, `message_delta`, `message_stop`, and a `ping`). It checks requests the way
the API does, so a request in the wrong shape fails here as it would there (Anthropic's error
JSON, `{"type": "error", "error": {"type": "invalid_request_error", "message": …}}`): the
`x-api-key` and `anthropic-version` headers, `model`, `max_tokens` and `messages`; each content
block (`text`, `image` and `document` with a base64 or URL `source`, `tool_use`, `tool_result`
answering a `tool_use` of the message before), `cache_control` on blocks only (never on a
message), `system`, `tools` with an `input_schema`, `tool_choice` naming a declared tool, and no
field the API does not know.

Prompt caching is played as Anthropic plays it: the first request whose blocks carry a
`cache_control` mark reports the tokens up to the last mark as `cache_creation_input_tokens`; a
later request with the same prefix reports them as `cache_read_input_tokens` (and
`input_tokens` counts the rest). Tokens are words (`stub_model.word_count`), plus one per
non-text block.

What the model answers is `stub_model`'s (scripted replies first). Every request's path, headers
(names lowercased) and body are recorded. Run it by hand with
`python -m tests.support.anthropic_server [PORT]`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_server import JsonHandler, StatefulServer, serve
from tests.support.stub_model import Reply, ScriptedReplies, Turn, answer, word_count

__all__ = ["AnthropicState", "RunningAnthropicServer", "run_anthropic_server"]

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "thinking",
        "output_format",
        "service_tier",
    }
)


class InvalidRequest(Exception):
    """A request the API refuses (400, `invalid_request_error`)."""


@dataclass
class AnthropicState:
    """What the server saw, and what it will answer; shared with the handler threads."""

    script: ScriptedReplies = field(default_factory=ScriptedReplies)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    cached_prefixes: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget what was recorded, the prompt cache and the scripted replies."""
        with self.lock:
            self.requests.clear()
            self.paths.clear()
            self.headers.clear()
            self.cached_prefixes.clear()
        self.script.clear()


@dataclass
class RunningAnthropicServer:
    """A running server: its base URL (give it to LiteLLM as `api_base`) and its state."""

    url: str
    state: AnthropicState


# -- checking a request as the API does ----------------------------------------------------------


def _check_cache_control(value: Any, where: str) -> None:
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest(f"{where}.cache_control: type must be 'ephemeral'")
    if set(value) - {"type", "ttl"} or value.get("ttl", "5m") not in ("5m", "1h"):
        raise InvalidRequest(f"{where}.cache_control: Extra inputs are not permitted")


def _check_keys(block: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(block) - allowed - {"type", "cache_control"}
    if extra:
        raise InvalidRequest(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
    if "cache_control" in block:
        _check_cache_control(block["cache_control"], where)


def _check_base64(data: Any, where: str) -> int:
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, TypeError, ValueError):
        raise InvalidRequest(f"{where}.source.data: invalid base64 data") from None


def _check_source(source: Any, kinds: frozenset[str], where: str) -> str:
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source: Field required")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in kinds:
            raise InvalidRequest(
                f"{where}.source.media_type: Input should be {', '.join(sorted(kinds))}"
            )
        _check_base64(source.get("data"), where)
        return str(media_type)
    if kind == "url" and isinstance(source.get("url"), str):
        return "url"
    if kind == "text" and "text/plain" in kinds and isinstance(source.get("data"), str):
        return "text/plain"
    raise InvalidRequest(f"{where}.source.type: Input tag {kind!r} does not match")


def _check_block(block: Any, where: str, earlier_tool_uses: set[str]) -> None:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: Input should be an object")
    kind = block.get("type")
    if kind == "text":
        _check_keys(block, {"text", "citations"}, where)
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.text: Field required")
    elif kind == "image":
        _check_keys(block, {"source"}, where)
        _check_source(block.get("source"), IMAGE_TYPES, where)
    elif kind == "document":
        _check_keys(block, {"source", "title", "context", "citations"}, where)
        _check_source(block.get("source"), DOCUMENT_TYPES, where)
    elif kind == "tool_use":
        _check_keys(block, {"id", "name", "input"}, where)
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise InvalidRequest(f"{where}: tool_use needs an id and a name")
        if not isinstance(block.get("input"), dict):
            raise InvalidRequest(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _check_keys(block, {"tool_use_id", "content", "is_error"}, where)
        if block.get("tool_use_id") not in earlier_tool_uses:
            raise InvalidRequest(
                f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        content = block.get("content", "")
        if isinstance(content, list):
            for index, inner in enumerate(content):
                _check_block(inner, f"{where}.content.{index}", set())
        elif not isinstance(content, str):
            raise InvalidRequest(f"{where}.content: Input should be a string or a list")
    else:
        raise InvalidRequest(f"{where}: Input tag {kind!r} found using 'type' does not match")


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def check_request(body: dict[str, Any]) -> None:
    """Refuse what the Messages API refuses (raises `InvalidRequest`)."""
    unknown = set(body) - _TOP_LEVEL
    if unknown:
        raise InvalidRequest(f"{sorted(unknown)[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise InvalidRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    previous_tool_uses: set[str] = set()
    for number, message in enumerate(messages):
        where = f"messages.{number}"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where}: Input should be an object")
        extra = set(message) - {"role", "content"}
        if extra:
            raise InvalidRequest(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise InvalidRequest(f"{where}.content: Field required")
        tool_uses: set[str] = set()
        for index, block in enumerate(_blocks(content)):
            _check_block(block, f"{where}.content.{index}", previous_tool_uses)
            if block.get("type") == "tool_use":
                tool_uses.add(block["id"])
        previous_tool_uses = tool_uses
    system = body.get("system")
    if system is not None:
        for index, block in enumerate(_blocks(system)):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise InvalidRequest(f"system.{index}: only text blocks are allowed")
            _check_block(block, f"system.{index}", set())
    names = []
    for index, tool in enumerate(body.get("tools") or []):
        where = f"tools.{index}"
        _check_keys(tool, {"name", "description", "input_schema"}, where)
        if tool.get("type", "custom") != "custom" or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"{where}: a custom tool needs a name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidRequest(f"{where}.input_schema.type: Input should be 'object'")
        names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            raise InvalidRequest(
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
            )
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise InvalidRequest(f"tool_choice.name: no tool named {choice.get('name')!r}")


# -- what the model was shown, and what it says ---------------------------------------------------


def _turn(body: dict[str, Any]) -> Turn:
    turn = Turn()
    last = body["messages"][-1]
    for block in _blocks(last["content"]):
        kind = block["type"]
        if kind == "tool_result":
            content = block.get("content", "")
            if isinstance(content, list):
                content = " ".join(inner.get("text", "") for inner in content)
            turn.tool_results.append(content)
        elif kind == "text":
            turn.received.append("text")
            turn.text += block["text"] + " "
        else:
            source = block.get("source", {})
            turn.received.append(source.get("media_type") or f"{kind} url")
    for tool in body.get("tools") or []:
        turn.tools[tool["name"]] = tool["input_schema"]
    choice = body.get("tool_choice") or {}
    turn.forced_tool = choice.get("name") if choice.get("type") == "tool" else None
    turn.tools_off = choice.get("type") == "none"
    output = body.get("output_format")
    if isinstance(output, dict) and output.get("type") == "json_schema":
        turn.json_schema = output.get("schema") or {}
    return turn


def _tokens(blocks: list[Any]) -> int:
    texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return word_count(texts) + sum(1 for b in blocks if b.get("type") != "text")


def _usage(state: AnthropicState, body: dict[str, Any]) -> dict[str, int]:
    """Input tokens, and the prompt cache's part in them (see the module docstring)."""
    sequence: list[Any] = [dict(tool, type="text", text="") for tool in body.get("tools") or []]
    sequence += _blocks(body.get("system") or [])
    for message in body["messages"]:
        sequence += _blocks(message["content"])
    total = _tokens(sequence)
    marked = [i for i, block in enumerate(sequence) if "cache_control" in block]
    usage = {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if marked:
        prefix = sequence[: marked[-1] + 1]
        key = json.dumps(prefix, sort_keys=True)
        cached = _tokens(prefix)
        with state.lock:
            seen = key in state.cached_prefixes
            state.cached_prefixes.add(key)
        usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = cached
        usage["input_tokens"] = total - cached
    return usage


def _content(reply: Reply, max_tokens: int) -> tuple[list[dict[str, Any]], str, int]:
    """The answer's content blocks, stop reason and output tokens."""
    blocks: list[dict[str, Any]] = []
    words = reply.text.split()
    stop = "end_turn"
    if len(words) > max_tokens:
        words, stop = words[:max_tokens], "max_tokens"
    if reply.text:
        blocks.append(
            {"type": "text", "text": " ".join(words) if stop != "end_turn" else reply.text}
        )
    for number, call in enumerate(reply.tool_calls, 1):
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_stub_{number}",
                "name": call.name,
                "input": call.arguments,
            }
        )
    if reply.tool_calls and stop == "end_turn":
        stop = "tool_use"
    return blocks, stop, len(words) + 10 * len(reply.tool_calls)


class _Handler(JsonHandler):
    server: StatefulServer[AnthropicState]

    def _error(self, status: int, kind: str, message: str) -> None:
        error = {"type": "error", "error": {"type": kind, "message": message}}
        self.send_json(status, error, headers={"request-id": "req_stub"})

    def do_POST(self) -> None:
        state = self.server.state
        try:
            body = self.read_json()
        except ValueError:
            self._error(400, "invalid_request_error", "the body is not valid JSON")
            return
        with state.lock:
            state.requests.append(body)
            state.paths.append(self.path)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.split("?")[0] != "/v1/messages":
            self._error(404, "not_found_error", f"Not Found: {self.path}")
            return
        if not self.headers.get("x-api-key"):
            self._error(401, "authentication_error", "x-api-key header is required")
            return
        if not self.headers.get("anthropic-version"):
            self._error(400, "invalid_request_error", "anthropic-version: header is required")
            return
        try:
            check_request(body)
        except InvalidRequest as exc:
            self._error(400, "invalid_request_error", str(exc))
            return
        reply = answer(_turn(body), state.script)
        blocks, stop, output_tokens = _content(reply, body["max_tokens"])
        usage = {**_usage(state, body), "output_tokens": output_tokens}
        message = {
            "id": f"msg_stub_{len(state.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            self._stream(message)
        else:
            self.send_json(200, message, headers={"request-id": "req_stub"})

    def _stream(self, message: dict[str, Any]) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        start = dict(message, content=[], stop_reason=None)
        start["usage"] = dict(message["usage"], output_tokens=1)
        events.append(("message_start", {"type": "message_start", "message": start}))
        events.append(("ping", {"type": "ping"}))
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening = {"type": "text", "text": ""}
                pieces = _pieces(block["text"])
                deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
            else:
                opening = dict(block, input={})
                arguments = json.dumps(block["input"])
                deltas = [
                    {"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments)
                ]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            for delta in deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": message["usage"]["output_tokens"]},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        data = b"".join(
            f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode() for name, payload in events
        )
        self.send_bytes(200, data, "text/event-stream; charset=utf-8", {"request-id": "req_stub"})


def _pieces(text: str) -> list[str]:
    """`text` in three pieces (some may be empty), as a stream would deliver it."""
    third = max(1, len(text) // 3)
    return [piece for piece in (text[:third], text[third : 2 * third], text[2 * third :]) if piece]


@contextmanager
def run_anthropic_server(port: int = 0) -> Iterator[RunningAnthropicServer]:
    """Serve the Messages API on 127.0.0.1 (`port` 0: a free one) until the block ends."""
    state = AnthropicState()
    with serve(_Handler, state, port) as bound:
        yield RunningAnthropicServer(f"http://127.0.0.1:{bound}", state)


if __name__ == "__main__":
    chosen = int(sys.argv[1]) if len(sys.argv) > 1 else 8300
    with run_anthropic_server(chosen) as server:
        print(f"Anthropic Messages API on {server.url}/v1/messages", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
