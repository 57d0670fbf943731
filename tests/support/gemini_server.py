"""A server that speaks Gemini's generateContent API, for tests: Google cannot be reached from here.

`POST /v1beta/models/{model}:generateContent`, and `:streamGenerateContent` (server-sent events
with `?alt=sse`, else one JSON array of the chunks, as the API sends them). Like the API it reads
field names in either spelling of its JSON mapping (`inlineData` or `inline_data`) and answers in
camelCase. It checks requests the way the API does (its error JSON, `{"error": {"code", "message",
"status"}}`): a key (`x-goog-api-key` or `?key=`), `contents` with `user`/`model` roles and parts
that each hold one of `text`, `inlineData` (a MIME type and base64 data), `fileData`,
`functionCall` or `functionResponse` (answering a call of the turn before, by name), `tools` with
`functionDeclarations`, a `toolConfig` naming declared functions, `generationConfig` and
`systemInstruction`, and no field the API does not know.

What the model answers is `stub_model`'s (scripted replies first). Function calls carry no id,
as Gemini's usually do not. Tokens are words, plus one per non-text part. Every request's path
(with its query), headers (names lowercased) and body are recorded. Run it by hand with
`python -m tests.support.gemini_server [PORT]`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.json_server import JsonHandler, StatefulServer, serve
from tests.support.stub_model import Reply, ScriptedReplies, Turn, answer, word_count

__all__ = ["GeminiState", "RunningGeminiServer", "run_gemini_server"]

_ROUTE = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
_TOP_LEVEL = frozenset(
    {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "labels",
    }
)
_GENERATION = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "speechConfig",
        "mediaResolution",
    }
)
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_PART_EXTRA = frozenset({"thought", "thoughtSignature", "videoMetadata", "partMetadata"})


class InvalidArgument(Exception):
    """A request the API refuses (400, `INVALID_ARGUMENT`)."""


@dataclass
class GeminiState:
    """What the server saw, and what it will answer; shared with the handler threads."""

    script: ScriptedReplies = field(default_factory=ScriptedReplies)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget what was recorded and the scripted replies."""
        with self.lock:
            self.requests.clear()
            self.paths.clear()
            self.headers.clear()
        self.script.clear()


@dataclass
class RunningGeminiServer:
    """A running server: its base URL and its state. LiteLLM's `api_base` is `{url}/v1beta`."""

    url: str
    state: GeminiState


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _fields(value: Any, where: str) -> dict[str, Any]:
    """An object's fields under their camelCase names (the API reads both spellings)."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object")
    return {_camel(name): item for name, item in value.items()}


def _unknown(names: set[str], where: str) -> InvalidArgument:
    name = sorted(names)[0]
    return InvalidArgument(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
    )


# -- checking a request as the API does ----------------------------------------------------------


def _check_part(raw: Any, where: str, calls_before: list[str]) -> dict[str, Any]:
    part = _fields(raw, where)
    held = [name for name in _PART_DATA if name in part]
    unknown = set(part) - set(_PART_DATA) - _PART_EXTRA
    if unknown:
        raise _unknown(unknown, where)
    if len(held) != 1:
        raise InvalidArgument(f"{where}: a part must hold exactly one of {', '.join(_PART_DATA)}")
    kind = held[0]
    if kind == "text" and not isinstance(part["text"], str):
        raise InvalidArgument(f"Invalid value at '{where}.text': expected a string")
    if kind == "inlineData":
        blob = _fields(part["inlineData"], f"{where}.inline_data")
        if not isinstance(blob.get("mimeType"), str) or not blob["mimeType"]:
            raise InvalidArgument(f"{where}.inline_data.mime_type: required")
        try:
            base64.b64decode(blob.get("data", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidArgument(f"Invalid value at '{where}.inline_data.data': base64") from None
    if kind == "fileData":
        data = _fields(part["fileData"], f"{where}.file_data")
        if not isinstance(data.get("fileUri"), str):
            raise InvalidArgument(f"{where}.file_data.file_uri: required")
    if kind == "functionCall":
        call = _fields(part["functionCall"], f"{where}.function_call")
        if not isinstance(call.get("name"), str) or not isinstance(call.get("args", {}), dict):
            raise InvalidArgument(
                f"{where}.function_call: a name and args (an object) are required"
            )
    if kind == "functionResponse":
        response = _fields(part["functionResponse"], f"{where}.function_response")
        if not isinstance(response.get("response"), dict):
            raise InvalidArgument(f"Invalid value at '{where}.function_response.response'")
        if response.get("name") not in calls_before:
            raise InvalidArgument(
                f"{where}: a function response part must answer a function call of the turn "
                f"before (no call named {response.get('name')!r})"
            )
    return part


def check_request(body: dict[str, Any]) -> dict[str, Any]:
    """Refuse what generateContent refuses (raises `InvalidArgument`); the body's fields in
    camelCase."""
    top = _fields(body, "body")
    unknown = set(top) - _TOP_LEVEL
    if unknown:
        raise _unknown(unknown, "body")
    contents = top.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidArgument("* GenerateContentRequest.contents: contents is not specified")
    calls_before: list[str] = []
    for number, raw in enumerate(contents):
        where = f"contents[{number}]"
        content = _fields(raw, where)
        if set(content) - {"role", "parts"}:
            raise _unknown(set(content) - {"role", "parts"}, where)
        if content.get("role", "user") not in ("user", "model", "function"):
            raise InvalidArgument(f"{where}.role: Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise InvalidArgument(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
            )
        checked = [
            _check_part(part, f"{where}.parts[{i}]", calls_before) for i, part in enumerate(parts)
        ]
        calls_before = [
            _fields(part["functionCall"], "")["name"] for part in checked if "functionCall" in part
        ]
    if "systemInstruction" in top:
        system = _fields(top["systemInstruction"], "system_instruction")
        for index, part in enumerate(system.get("parts") or []):
            _check_part(part, f"system_instruction.parts[{index}]", [])
    names: list[str] = []
    for index, raw in enumerate(top.get("tools") or []):
        tool = _fields(raw, f"tools[{index}]")
        for number, declaration in enumerate(tool.get("functionDeclarations") or []):
            function = _fields(declaration, f"tools[{index}].function_declarations[{number}]")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise InvalidArgument(
                    f"* tools[{index}].function_declarations[{number}].name: required"
                )
            names.append(function["name"])
    if "toolConfig" in top:
        config = _fields(
            _fields(top["toolConfig"], "tool_config").get("functionCallingConfig", {}),
            "tool_config.function_calling_config",
        )
        if config.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            raise InvalidArgument("tool_config.function_calling_config.mode: invalid")
        for name in config.get("allowedFunctionNames") or []:
            if name not in names:
                raise InvalidArgument(
                    f"allowed_function_names: {name!r} is not a declared function"
                )
    if "generationConfig" in top:
        generation = _fields(top["generationConfig"], "generation_config")
        unknown = set(generation) - _GENERATION
        if unknown:
            raise _unknown(unknown, "generation_config")
    return top


# -- what the model was shown, and what it says ---------------------------------------------------


def _turn(top: dict[str, Any]) -> Turn:
    turn = Turn()
    for raw in top["contents"][-1]["parts"]:
        part = _fields(raw, "")
        if "functionResponse" in part:
            response = _fields(part["functionResponse"], "")["response"]
            content = response.get("content")
            turn.tool_results.append(content if isinstance(content, str) else json.dumps(response))
        elif "text" in part:
            turn.received.append("text")
            turn.text += part["text"] + " "
        elif "inlineData" in part:
            turn.received.append(_fields(part["inlineData"], "")["mimeType"])
        elif "fileData" in part:
            turn.received.append(_fields(part["fileData"], "").get("mimeType") or "file url")
    for raw in top.get("tools") or []:
        for declaration in _fields(raw, "").get("functionDeclarations") or []:
            function = _fields(declaration, "")
            schema = function.get("parameters") or function.get("parametersJsonSchema") or {}
            turn.tools[function["name"]] = schema
    config = _fields(_fields(top.get("toolConfig", {}), "").get("functionCallingConfig", {}), "")
    allowed = config.get("allowedFunctionNames") or []
    if config.get("mode") == "ANY" and len(allowed) == 1:
        turn.forced_tool = allowed[0]
    turn.tools_off = config.get("mode") == "NONE"
    generation = _fields(top.get("generationConfig", {}), "")
    if generation.get("responseMimeType") == "application/json":
        turn.json_schema = (
            generation.get("responseJsonSchema") or generation.get("responseSchema") or {}
        )
    return turn


def _prompt_tokens(top: dict[str, Any]) -> int:
    parts = [_fields(p, "") for c in top["contents"] for p in _fields(c, "")["parts"]]
    if "systemInstruction" in top:
        parts += [_fields(p, "") for p in _fields(top["systemInstruction"], "").get("parts") or []]
    texts = [p["text"] for p in parts if "text" in p]
    return word_count(texts) + len(parts) - len(texts)


def _answer_parts(reply: Reply, limit: int | None) -> tuple[list[dict[str, Any]], str, int]:
    parts: list[dict[str, Any]] = []
    words = reply.text.split()
    finish = "STOP"
    if limit is not None and len(words) > limit:
        words, finish = words[:limit], "MAX_TOKENS"
    if reply.text:
        parts.append({"text": reply.text if finish == "STOP" else " ".join(words)})
    for call in reply.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": call.arguments}})
    return parts, finish, len(words) + 10 * len(reply.tool_calls)


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": code}}


class _Handler(JsonHandler):
    server: StatefulServer[GeminiState]

    def do_POST(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            body = self.read_json()
        except ValueError:
            self.send_json(400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
            return
        with state.lock:
            state.requests.append(body)
            state.paths.append(self.path)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
        route = _ROUTE.match(url.path)
        if route is None:
            self.send_json(404, _error(404, "NOT_FOUND", f"{url.path} is not found"))
            return
        if not (self.headers.get("x-goog-api-key") or query.get("key")):
            message = (
                "Method doesn't allow unregistered callers (callers without established identity)."
            )
            self.send_json(403, _error(403, "PERMISSION_DENIED", message))
            return
        try:
            top = check_request(body)
        except InvalidArgument as exc:
            self.send_json(400, _error(400, "INVALID_ARGUMENT", str(exc)))
            return
        generation = _fields(top.get("generationConfig", {}), "")
        reply = answer(_turn(top), state.script)
        parts, finish, output_tokens = _answer_parts(reply, generation.get("maxOutputTokens"))
        prompt_tokens = _prompt_tokens(top)
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        }
        model = route["model"]
        if route["method"] == "generateContent":
            candidate = {
                "content": {"parts": parts, "role": "model"},
                "finishReason": finish,
                "index": 0,
            }
            self.send_json(
                200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}
            )
            return
        chunks = _chunks(parts, finish, usage, model)
        if query.get("alt") == ["sse"]:
            data = b"".join(
                b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n" for chunk in chunks
            )
            self.send_bytes(200, data, "text/event-stream")
        else:
            self.send_bytes(200, json.dumps(chunks).encode(), "application/json; charset=UTF-8")


def _chunks(
    parts: list[dict[str, Any]], finish: str, usage: dict[str, int], model: str
) -> list[dict[str, Any]]:
    """The answer as streamed: text in three pieces, each call whole, the finish reason and
    full usage on the last chunk."""
    pieces: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part:
            text = part["text"]
            third = max(1, len(text) // 3)
            pieces += [
                {"text": t} for t in (text[:third], text[third : 2 * third], text[2 * third :]) if t
            ]
        else:
            pieces.append(part)
    running = {
        "promptTokenCount": usage["promptTokenCount"],
        "totalTokenCount": usage["promptTokenCount"],
    }
    chunks = [
        {
            "candidates": [{"content": {"parts": [piece], "role": "model"}, "index": 0}],
            "usageMetadata": running,
            "modelVersion": model,
        }
        for piece in pieces
    ]
    last = {
        "content": {"parts": [{"text": ""}], "role": "model"},
        "finishReason": finish,
        "index": 0,
    }
    chunks.append({"candidates": [last], "usageMetadata": usage, "modelVersion": model})
    return chunks


@contextmanager
def run_gemini_server(port: int = 0) -> Iterator[RunningGeminiServer]:
    """Serve generateContent on 127.0.0.1 (`port` 0: a free one) until the block ends."""
    state = GeminiState()
    with serve(_Handler, state, port) as bound:
        yield RunningGeminiServer(f"http://127.0.0.1:{bound}", state)


if __name__ == "__main__":
    chosen = int(sys.argv[1]) if len(sys.argv) > 1 else 8301
    with run_gemini_server(chosen) as server:
        print(f"Gemini generateContent on {server.url}/v1beta", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
