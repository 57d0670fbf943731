"""A chat-completions server speaking OpenAI's protocol whose model calls tools, for tests.

`transformers serve` runs a real model, but a tiny random one never calls a tool; this server
answers with `stub_model`'s replies (scripted ones first), so tool calls, structured answers and
cached-token counts can be checked end to end, plain and streamed.

`POST /v1/chat/completions`, as JSON or, with `"stream": true`, as server-sent events: text in
three pieces, then each tool call as OpenAI streams it (a first delta with its `index`, `id`,
`type` and name and empty arguments, then the arguments' text in three pieces), the finish reason,
a usage chunk when `stream_options.include_usage` is set, and `[DONE]`. With
`state.interleave_calls` the calls' pieces are interleaved (a server may send them so; a client
must put them back together by `index`).

Requests are checked the way OpenAI's API does (its error JSON, `{"error": {"message", "type",
"param", "code"}}`): `model` and `messages`; each message's role, its content as a string or parts
(`text`, `image_url`, `input_audio` in wav or mp3, `file` with `file_data` or `file_id`), an
assistant's `tool_calls`, a `tool` message answering one of them by `tool_call_id`; `tools`,
`tool_choice` naming a declared function, `parallel_tool_calls`, `response_format`, and no request
field the API does not know. `cache_control` marks are let through (as OpenAI-compatible servers
such as vLLM do) unless `state.refuse_cache_control` is set (as OpenAI's own API does).

Prompt caching is played as OpenAI plays it (automatic): a request whose messages but the last
were seen before reports their tokens as `prompt_tokens_details.cached_tokens`. Tokens are words,
plus one per non-text part. Every request's path, headers and body are recorded.
Run it by hand with `python -m tests.support.openai_chat_server [PORT]`.
"""

from __future__ import annotations

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

__all__ = ["OpenAIChatState", "RunningOpenAIChatServer", "run_openai_chat_server"]

_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "modalities",
        "audio",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "n",
        "user",
        "reasoning_effort",
    }
)
_PARTS = {
    "text": "text",
    "image_url": "image_url",
    "input_audio": "input_audio",
    "file": "file",
}


class InvalidRequest(Exception):
    """A request the API refuses (400, `invalid_request_error`); `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class OpenAIChatState:
    """What the server saw, what it will answer, and how strict it is."""

    script: ScriptedReplies = field(default_factory=ScriptedReplies)
    interleave_calls: bool = False
    refuse_cache_control: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    seen_prefixes: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget what was recorded, the prompt cache, the script, and the switches."""
        with self.lock:
            self.requests.clear()
            self.bodies.clear()
            self.headers.clear()
            self.seen_prefixes.clear()
            self.interleave_calls = False
            self.refuse_cache_control = False
        self.script.clear()


@dataclass
class RunningOpenAIChatServer:
    """A running server: its base URL (up to and including `/v1`) and its state."""

    url: str
    state: OpenAIChatState


# -- checking a request as the API does ----------------------------------------------------------


def _check_part(part: Any, where: str, refuse_cache: bool) -> str:
    if not isinstance(part, dict) or part.get("type") not in _PARTS:
        kind = part.get("type") if isinstance(part, dict) else part
        raise InvalidRequest(
            f"Invalid value: {kind!r}. Supported values are: 'text', 'image_url', "
            "'input_audio', and 'file'.",
            where,
        )
    kind = part["type"]
    allowed = {"type", kind} | ({"cache_control"} if not refuse_cache else set())
    if set(part) - allowed:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {sorted(set(part) - allowed)[0]}", where
        )
    value = part[kind]
    if kind == "text" and not isinstance(value, str):
        raise InvalidRequest("Invalid type: expected a string.", f"{where}.text")
    if kind == "image_url" and not (isinstance(value, dict) and isinstance(value.get("url"), str)):
        raise InvalidRequest(
            "Invalid image_url: expected an object with a url.", f"{where}.image_url"
        )
    if kind == "input_audio":
        if not isinstance(value, dict) or value.get("format") not in ("wav", "mp3"):
            raise InvalidRequest(
                "Invalid value: input_audio.format must be 'wav' or 'mp3'.",
                f"{where}.input_audio.format",
            )
        return f"audio/{value['format']}"
    if kind == "file" and not (
        isinstance(value, dict) and ("file_data" in value or "file_id" in value)
    ):
        raise InvalidRequest(
            "Missing required parameter: file.file_data or file.file_id.", f"{where}.file"
        )
    if kind == "image_url":
        url = value["url"]
        return url[5 : url.index(";")] if url.startswith("data:") and ";" in url else "image url"
    if kind == "file":
        data = value.get("file_data", "")
        return data[5 : data.index(";")] if data.startswith("data:") and ";" in data else "file"
    return "text"


def check_request(body: dict[str, Any], refuse_cache: bool) -> None:
    """Refuse what the chat completions API refuses (raises `InvalidRequest`)."""
    unknown = set(body) - _TOP_LEVEL
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"Unrecognized request argument supplied: {name}", name)
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("[] is too short - 'messages'", "messages")
    open_calls: set[str] = set()
    for number, message in enumerate(messages):
        where = f"messages[{number}]"
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise InvalidRequest("Invalid value for 'role'.", f"{where}.role")
        allowed = {"role", "content", "name", "tool_calls", "tool_call_id", "refusal"}
        if not refuse_cache:
            allowed.add("cache_control")
        if set(message) - allowed:
            extra = sorted(set(message) - allowed)[0]
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {extra}", f"{where}.{extra}"
            )
        content = message.get("content")
        if isinstance(content, list):
            for index, part in enumerate(content):
                _check_part(part, f"{where}.content[{index}]", refuse_cache)
        elif not (content is None or isinstance(content, str)):
            raise InvalidRequest("Invalid type for content.", f"{where}.content")
        if message["role"] == "assistant":
            open_calls = set()
            for index, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(call.get("id"), str)
                    or not isinstance(function, dict)
                    or not isinstance(function.get("arguments"), str)
                ):
                    raise InvalidRequest("Invalid tool call.", f"{where}.tool_calls[{index}]")
                open_calls.add(call["id"])
        elif message["role"] == "tool" and message.get("tool_call_id") not in open_calls:
            raise InvalidRequest(
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'.",
                f"{where}.role",
            )
    names = []
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise InvalidRequest(
                "Missing required parameter: 'tools[0].function'.", f"tools[{index}]"
            )
        names.append(function["name"])
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("none", "auto", "required"):
        name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if name not in names:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                "tool_choice",
            )
    if "parallel_tool_calls" in body and not isinstance(body["parallel_tool_calls"], bool):
        raise InvalidRequest(
            "Invalid type for 'parallel_tool_calls': expected a boolean.", "parallel_tool_calls"
        )
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise InvalidRequest(
                "Invalid value for 'response_format.type'.", "response_format.type"
            )
        if kind == "json_schema" and not isinstance(
            response_format.get("json_schema", {}).get("name"), str
        ):
            raise InvalidRequest(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
            )


# -- what the model was shown, and what it says ---------------------------------------------------


def _turn(body: dict[str, Any]) -> Turn:
    turn = Turn()
    messages = body["messages"]
    trailing_tools = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        trailing_tools.append(message)
    if trailing_tools:
        turn.tool_results = [_text(m.get("content")) for m in reversed(trailing_tools)]
    else:
        content = messages[-1].get("content")
        if isinstance(content, list):
            turn.received = [_check_part(part, "", False) for part in content]
        else:
            turn.received = ["text"]
        turn.text = _text(content)
    for tool in body.get("tools") or []:
        turn.tools[tool["function"]["name"]] = tool["function"].get("parameters") or {}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        turn.forced_tool = choice["function"]["name"]
    turn.tools_off = choice == "none"
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        turn.json_schema = response_format["json_schema"].get("schema") or {}
    elif response_format.get("type") == "json_object":
        turn.json_schema = {}
    return turn


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _tokens(messages: list[Any]) -> int:
    texts, others = [], 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts += [p["text"] for p in content if p.get("type") == "text"]
            others += sum(1 for p in content if p.get("type") != "text")
        else:
            texts.append(content or "")
    return word_count(texts) + others


def _usage(state: OpenAIChatState, body: dict[str, Any], output_tokens: int) -> dict[str, Any]:
    messages = body["messages"]
    prompt = _tokens(messages)
    cached = 0
    if len(messages) > 1:
        prefix = json.dumps(messages[:-1], sort_keys=True)
        with state.lock:
            if prefix in state.seen_prefixes:
                cached = _tokens(messages[:-1])
            state.seen_prefixes.add(prefix)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output_tokens,
        "total_tokens": prompt + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _message(reply: Reply, limit: int | None) -> tuple[dict[str, Any], str, int]:
    words = reply.text.split()
    finish = "stop"
    if limit is not None and len(words) > limit:
        words, finish = words[:limit], "length"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": (reply.text if finish == "stop" else " ".join(words)) or None,
        "refusal": None,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_stub_{number}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for number, call in enumerate(reply.tool_calls, 1)
        ]
        if finish == "stop":
            finish = "tool_calls"
    return message, finish, len(words) + 10 * len(reply.tool_calls)


def _pieces(text: str) -> list[str]:
    third = max(1, len(text) // 3)
    return [piece for piece in (text[:third], text[third : 2 * third], text[2 * third :]) if piece]


class _Handler(JsonHandler):
    server: StatefulServer[OpenAIChatState]

    def _error(self, status: int, message: str, param: str | None, code: str | None = None) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        self.send_json(status, {"error": error})

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "We could not parse the JSON body of your request.", None)
            return
        with state.lock:
            state.requests.append(body)
            state.bodies.append(raw)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.path != "/v1/chat/completions":
            self._error(404, f"Invalid URL (POST {self.path})", None, "unknown_url")
            return
        try:
            check_request(body, state.refuse_cache_control)
        except InvalidRequest as exc:
            self._error(400, str(exc), exc.param)
            return
        reply = answer(_turn(body), state.script)
        message, finish, output_tokens = _message(reply, body.get("max_tokens"))
        usage = _usage(state, body, output_tokens)
        head = {"id": f"chatcmpl-stub-{len(state.requests)}", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            self.send_json(
                200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = self._events(
            head, message, finish, usage if include_usage else None, state.interleave_calls
        )
        data = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)
        self.send_bytes(200, data + b"data: [DONE]\n\n", "text/event-stream")

    @staticmethod
    def _events(
        head: dict[str, Any],
        message: dict[str, Any],
        finish: str,
        usage: dict[str, Any] | None,
        interleave: bool,
    ) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in _pieces(message["content"] or "")]
        calls = message.get("tool_calls") or []
        streams = []
        for index, call in enumerate(calls):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            rest = [
                {"index": index, "function": {"arguments": p}}
                for p in _pieces(call["function"]["arguments"])
            ]
            streams.append([first, *rest])
        if interleave:
            longest = max((len(s) for s in streams), default=0)
            ordered = [s[i] for i in range(longest) for s in streams if i < len(s)]
        else:
            ordered = [piece for s in streams for piece in s]
        events += [chunk({"tool_calls": [piece]}) for piece in ordered]
        events.append(chunk({}, finish))
        if usage is not None:
            events.append(
                {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        return events


@contextmanager
def run_openai_chat_server(port: int = 0) -> Iterator[RunningOpenAIChatServer]:
    """Serve chat completions on 127.0.0.1 (`port` 0: a free one) until the block ends."""
    state = OpenAIChatState()
    with serve(_Handler, state, port) as bound:
        yield RunningOpenAIChatServer(f"http://127.0.0.1:{bound}/v1", state)


if __name__ == "__main__":
    chosen = int(sys.argv[1]) if len(sys.argv) > 1 else 8302
    with run_openai_chat_server(chosen) as server:
        print(f"OpenAI chat completions on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
