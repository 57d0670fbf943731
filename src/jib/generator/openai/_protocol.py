"""The OpenAI wire protocol: request bodies, answers, errors and server-sent events.

Pure functions over dicts and bytes, nothing sent from here, so the generator reads as flow and
these read as the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jib._retry import retry_after_from
from jib._secrets import redact
from jib.errors import MalformedResponseError, ProviderError, error_for_status
from jib.messages import (
    GeneratedMessage,
    GeneratedText,
    Message,
    Usage,
    normalize_stop_reason,
)
from jib.params import GenerateParams

__all__ = [
    "StreamState",
    "chat_body",
    "error_from_response",
    "parse_json",
    "read_chat",
    "read_text",
    "text_body",
]

_NOT_IN_BODY = frozenset({"timeout"})
_MAX_ERROR_LENGTH = 1000


def _sampling(params: GenerateParams) -> dict[str, Any]:
    body = {
        name: value
        for name, value in params
        if value is not None and name != "extra" and name not in _NOT_IN_BODY
    }
    body.update(params.extra)  # tools, response_format, logprobs, … pass through untouched
    return body


def chat_body(model: str, messages: Sequence[Message], params: GenerateParams) -> dict[str, Any]:
    """The `/chat/completions` request body."""
    body: dict[str, Any] = {"model": model, "messages": [m.to_dict() for m in messages]}
    body.update(_sampling(params))
    return body


def text_body(model: str, text: str, params: GenerateParams) -> dict[str, Any]:
    """The `/completions` request body."""
    body: dict[str, Any] = {"model": model, "prompt": text}
    body.update(_sampling(params))
    return body


def parse_json(raw: bytes, provider: str, status: int) -> Any:
    """The answer's JSON.

    Raises:
        MalformedResponseError: it is not JSON (a cut body, a proxy's HTML page): retryable.
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        shown = raw[:200].decode("utf-8", "replace")
        raise MalformedResponseError(
            f"the answer is not valid JSON: {shown!r}", status_code=status, provider=provider
        ) from exc


def _usage(data: Mapping[str, Any]) -> Usage | None:
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion))


def _first_choice(data: Any, provider: str, status: int) -> Mapping[str, Any]:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponseError(
            "the answer has no choices", status_code=status, provider=provider
        )
    first: Mapping[str, Any] = choices[0]
    return first


def _extra(data: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if data.get("id") is not None:
        extra["response_id"] = data["id"]
    if data.get("model") is not None:
        extra["model"] = data["model"]
    return extra


def read_chat(data: Any, provider: str, status: int = 200) -> GeneratedMessage:
    """A `GeneratedMessage` from a chat completion.

    `extra` holds the response id and model, and `tool_calls`, `reasoning_content` and
    `logprobs` when the server sent them.
    """
    choice = _first_choice(data, provider, status)
    message = choice.get("message") or {}
    extra = _extra(data)
    for name in ("tool_calls", "reasoning_content"):
        if message.get(name):
            extra[name] = message[name]
    if choice.get("logprobs") is not None:
        extra["logprobs"] = choice["logprobs"]
    return GeneratedMessage(
        Message("assistant", str(message.get("content") or "")),
        normalize_stop_reason(choice.get("finish_reason")),
        _usage(data),
        extra,
    )


def read_text(data: Any, provider: str, status: int = 200) -> GeneratedText:
    """A `GeneratedText` from a text completion."""
    choice = _first_choice(data, provider, status)
    extra = _extra(data)
    if choice.get("logprobs") is not None:
        extra["logprobs"] = choice["logprobs"]
    return GeneratedText(
        str(choice.get("text") or ""),
        normalize_stop_reason(choice.get("finish_reason")),
        _usage(data),
        extra,
    )


def error_from_response(
    status: int,
    raw: bytes,
    headers: Mapping[str, str],
    provider: str,
    secrets: Iterable[str],
) -> ProviderError:
    """The normalized error for a failed answer: OpenAI's `{"error": {"message", "type",
    "code"}}` when the body has it, else the body's text; the key never in it."""
    message = ""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            message = str(error.get("message") or "")
            kind = error.get("type") or error.get("code")
            if kind:
                message = f"{message} ({kind})" if message else str(kind)
        elif isinstance(error, str):
            message = error
        elif isinstance(data.get("message"), str):
            message = data["message"]
    if not message:
        message = raw.decode("utf-8", "replace").strip() or "(empty body)"
    message = redact(message, secrets)
    if len(message) > _MAX_ERROR_LENGTH:
        message = message[: _MAX_ERROR_LENGTH - 3] + "..."
    return error_for_status(
        status, message, provider=provider, retry_after=retry_after_from(headers)
    )


@dataclass
class StreamState:
    """What a stream of chat (or text) completion chunks has said so far."""

    provider: str
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def feed(self, line: bytes) -> str | None:
        """Read one line of the event stream; return the text delta it carried, if any.

        Raises:
            MalformedResponseError: an event's data is not JSON.
        """
        line = line.strip()
        if not line.startswith(b"data:"):
            return None  # blank separators, comments, `event:`/`id:` fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return None
        chunk = parse_json(payload, self.provider, 200)
        if not isinstance(chunk, Mapping):
            return None
        if isinstance(chunk.get("error"), Mapping):
            raise error_from_response(500, payload, {}, self.provider, ())
        self.extra.update(_extra(chunk))
        usage = _usage(chunk)
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], Mapping):
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, Mapping) else choice.get("text")
        if text:
            self.parts.append(str(text))
            return str(text)
        return None

    def message(self) -> GeneratedMessage:
        """The whole answer, as the non-streamed call would have returned it."""
        return GeneratedMessage(
            Message("assistant", "".join(self.parts)),
            normalize_stop_reason(self.finish_reason),
            self.usage,
            self.extra,
        )
