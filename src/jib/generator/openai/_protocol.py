"""The OpenAI wire protocol: request bodies, answers, errors and server-sent events.

The one reader of OpenAI-shaped answers: `openai!` feeds it the JSON it receives, and the
LiteLLM path feeds it LiteLLM's responses as plain dicts (LiteLLM answers in OpenAI's shape for
every provider). So usage, stop reasons, logprobs, tool calls, "no choices" and cut streams mean
the same thing whichever provider fetched them.

Reading is strict about shape and lenient about absence: a missing field takes its default (no
usage, `unknown` stop reason, empty content), while a field of the wrong kind — usage that is not a
count, a message that is not an object, no choices at all — is a `MalformedResponseError` for that
item (retryable: a cut or garbled answer is usually a transient fault of a server or a proxy). No
other exception leaves this module.

Pure functions over dicts and bytes, nothing sent from here, so the generators read as flow and
these read as the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jib import _json
from jib._retry import retry_after_from
from jib._secrets import redact
from jib._wire.models import too_large
from jib.errors import (
    MalformedResponseError,
    ProcessingError,
    ProviderConnectionError,
    ProviderError,
    error_for_status,
)
from jib.messages import (
    GeneratedMessage,
    GeneratedText,
    Message,
    Usage,
    normalize_stop_reason,
)
from jib.params import GenerateParams
from jib.tools import FunctionCall, ToolCall

__all__ = [
    "INERT_REQUEST_OPTIONS",
    "STREAM_CUT",
    "TEXT_COMPLETION_CANNOT_CARRY",
    "StreamState",
    "chat_body",
    "check_text_params",
    "error_from_response",
    "parse_json",
    "read_chat",
    "read_text",
    "sampling_fields",
    "text_body",
    "wire_messages",
]

INERT_REQUEST_OPTIONS: frozenset[str] = frozenset(
    f"extra.{name}"
    for name in (
        "logit_bias",
        "logprobs",
        "min_p",
        "parallel_tool_calls",
        "reasoning_effort",
        "repetition_penalty",
        "response_format",
        "tool_choice",
        "tools",
        "top_logprobs",
    )
)
"""Request fields of the OpenAI protocol (as `extra` keys) that only shape the answer: data may
set them (see `jib.trust`). For `openai!` and the LiteLLM path alike."""

STREAM_CUT = "the stream ended before the answer was finished"
"""What a stream cut short is called, whichever provider read it."""

_NOT_IN_BODY = frozenset({"timeout"})
_MAX_ERROR_LENGTH = 1000


def _sampling(params: GenerateParams) -> dict[str, Any]:
    body = params.to_dict()  # tools as dicts; `extra` (logprobs, a server's own…) passed as is
    for name in _NOT_IN_BODY:
        body.pop(name, None)
    return body


def chat_body(
    model: str,
    messages: Sequence[Message],
    params: GenerateParams,
    *,
    cache_marks: bool = True,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `/chat/completions` request body: each message in the OpenAI shape (parts, tool
    calls, tool results), then the params (tools, `tool_choice`, `response_format`, …).

    `cache_marks=False` leaves the messages' and parts' `cache_control` out, for servers that
    cache by themselves and refuse the field (OpenAI's own). `sampling`: `params`' part of the
    body when the caller has it already (`sampling_fields`); it is not copied.
    """
    body: dict[str, Any] = {"model": model, "messages": wire_messages(messages, cache_marks)}
    body.update(_sampling(params) if sampling is None else sampling)
    return body


def sampling_fields(params: GenerateParams) -> dict[str, Any]:
    """`params`' part of a request body (all but `timeout` and what jib keeps to itself)."""
    return _sampling(params)


def wire_messages(messages: Sequence[Message], cache_marks: bool = True) -> list[dict[str, Any]]:
    """The messages in the OpenAI shape, as they go on the wire: an assistant's message that
    only calls tools has `content: null` (OpenAI's convention; an empty text would reach
    providers LiteLLM translates for as an empty text part). `cache_marks=False` leaves every
    `cache_control` out."""
    wire = [m.to_dict() for m in messages]
    for message in wire:
        if message["content"] == "" and "tool_calls" in message:
            message["content"] = None
        if not cache_marks:
            message.pop("cache_control", None)
            content = message["content"]
            if type(content) is list:
                for part in content:
                    part.pop("cache_control", None)
    return wire


def text_body(model: str, text: str, params: GenerateParams) -> dict[str, Any]:
    """The `/completions` request body."""
    body: dict[str, Any] = {"model": model, "prompt": text}
    body.update(_sampling(params))
    return body


TEXT_COMPLETION_CANNOT_CARRY = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "modalities",
    "audio",
)
"""Chat-only request fields: a text completion (`/completions`) takes a prompt and no tools."""


def check_text_params(params: GenerateParams, provider: str) -> None:
    """Refuse, before anything is sent, params a text completion cannot carry.

    Raises:
        ProcessingError: `params` (or their `extra`) set a chat-only field; the message names
            the provider and the fields.
    """
    extra = params.extra
    refused = [
        name
        for name in TEXT_COMPLETION_CANNOT_CARRY
        if getattr(params, name) is not None or name in extra
    ]
    if refused:
        raise ProcessingError(
            f"[{provider}] a text completion cannot carry {', '.join(refused)}: it sends a "
            "prompt, not a chat; use .chat() for tools and audio"
        )


def parse_json(raw: bytes, provider: str, status: int = 200) -> Any:
    """The answer's JSON (depth-bounded, as all JSON jib reads).

    Raises:
        MalformedResponseError: it is not JSON (a cut body, a proxy's HTML page) or is nested
            absurdly deep: retryable.
    """

    try:
        return _json.loads(raw, what="the answer", error=_TooDeep)
    except _TooDeep as exc:
        reason = str(exc)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = f"the answer is not valid JSON: {raw[:200].decode('utf-8', 'replace')!r}"
    raise MalformedResponseError(reason, status_code=status, provider=provider)


class _TooDeep(Exception):
    """The answer nests deeper than `jib._json` reads."""


# -- answers ------------------------------------------------------------------------------------


class _Reader:
    """Reads one answer's fields; a field of the wrong kind is a `MalformedResponseError`."""

    __slots__ = ("provider", "status")

    def __init__(self, provider: str, status: int) -> None:
        self.provider = provider
        self.status = status

    def malformed(self, what: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"the answer is not in the OpenAI format: {what}",
            status_code=self.status,
            provider=self.provider,
        )

    # Each check tries the exact type JSON gives first (`type(x) is dict`): this runs per answer,
    # and an `isinstance` against an abstract class costs several times more.

    def mapping(self, value: Any, what: str) -> Mapping[str, Any]:
        if type(value) is dict or isinstance(value, Mapping):
            return value
        if value is None:
            return {}
        raise self.malformed(f"{what} is a {type(value).__name__}, not an object")

    def first_choice(self, data: Any) -> Mapping[str, Any]:
        if type(data) is not dict:
            data = self.mapping(data, "the answer")
        choices = data.get("choices")
        if not choices or type(choices) is not list:
            raise self.malformed("it has no choices")
        choice = choices[0]
        return choice if type(choice) is dict else self.mapping(choice, "the first choice")

    def text(self, value: Any, what: str) -> str:
        if type(value) is str:
            return value
        if value is None:
            return ""
        if isinstance(value, list):  # content as parts: [{"type": "text", "text": "…"}]
            return "".join(
                self.text(self.mapping(part, what).get("text"), what)
                for part in value
                if isinstance(part, Mapping) and part.get("type", "text") == "text"
            )
        raise self.malformed(f"{what} is a {type(value).__name__}, not text")

    def stop_reason(self, choice: Mapping[str, Any]) -> str | None:
        reason = choice.get("finish_reason")
        if reason is None or type(reason) is str:
            return reason
        raise self.malformed(f"finish_reason is a {type(reason).__name__}, not text")

    def count(self, value: Any, what: str) -> int:
        if type(value) is int and 0 <= value < 2**63:
            return value
        if value is None:
            return 0
        if isinstance(value, bool):
            raise self.malformed(f"{what} is {value!r}, not a count")
        if isinstance(value, int):
            number = value
        elif _integral(value):
            number = int(value)
        else:
            raise self.malformed(f"{what} is {_shown(value)}, not a count")
        if not 0 <= number < 2**63:
            raise self.malformed(f"{what} is {number}, not a count")
        return number

    def usage(self, data: Mapping[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if usage is None:
            return None
        if type(usage) is not dict:
            usage = self.mapping(usage, "usage")
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if not (
            type(prompt) is int
            and type(completion) is int
            and type(total) is int
            and min(prompt, completion, total) >= 0
            and max(prompt, completion, total) < 2**63
        ):
            prompt = self.count(prompt, "usage.prompt_tokens")
            completion = self.count(completion, "usage.completion_tokens")
            total = self.count(total, "usage.total_tokens")
        usage_counts = Usage(prompt, completion, total or prompt + completion)
        prompt_details = usage.get("prompt_tokens_details")
        if prompt_details:  # OpenAI's cached input
            usage_counts.cached_input_tokens = self.count(
                self.mapping(prompt_details, "usage.prompt_tokens_details").get("cached_tokens"),
                "usage.prompt_tokens_details.cached_tokens",
            )
        completion_details = usage.get("completion_tokens_details")
        if completion_details:
            usage_counts.reasoning_tokens = self.count(
                self.mapping(completion_details, "usage.completion_tokens_details").get(
                    "reasoning_tokens"
                ),
                "usage.completion_tokens_details.reasoning_tokens",
            )
        # Anthropic's, as LiteLLM passes them on.
        if usage.get("cache_read_input_tokens"):
            usage_counts.cached_input_tokens = self.count(
                usage["cache_read_input_tokens"], "usage.cache_read_input_tokens"
            )
        if usage.get("cache_creation_input_tokens"):
            usage_counts.cache_write_tokens = self.count(
                usage["cache_creation_input_tokens"], "usage.cache_creation_input_tokens"
            )
        return usage_counts

    def tool_calls(self, value: Any) -> list[ToolCall]:
        if type(value) is not list:
            raise self.malformed(f"tool_calls is a {type(value).__name__}, not a list")
        try:
            return [ToolCall.from_dict(self.mapping(call, "a tool call")) for call in value]
        except ValueError as exc:
            raise self.malformed(str(exc)) from None

    def extra(self, data: Mapping[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if data.get("id") is not None:
            extra["response_id"] = data["id"]
        if data.get("model") is not None:
            extra["model"] = data["model"]
        return extra


def _integral(value: Any) -> bool:
    """A whole number written as a float (`12.0`) or as digits (`"12"`)."""
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return isinstance(value, str) and value.isdigit() and len(value) < 20


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_chat(data: Any, provider: str, status: int = 200) -> GeneratedMessage:
    """A `GeneratedMessage` from a chat completion.

    The message carries the tool calls the model asked for; `refusal` the model's refusal text;
    `extra` holds the response id and model, and `reasoning_content` and `logprobs` when the
    server sent them.

    Raises:
        MalformedResponseError: the answer is not shaped as a chat completion.
    """
    # The usual shape is read with a type test per field; a field of another kind goes to the
    # reader's method, which reads it or says what is wrong.
    reader = _Reader(provider, status)
    choice = reader.first_choice(data)
    message = choice.get("message")
    if type(message) is not dict:
        message = reader.mapping(message, "the message")
    content = message.get("content")
    if type(content) is not str:
        content = reader.text(content, "the message's content")
    extra = reader.extra(data)
    calls = message.get("tool_calls")
    tool_calls = reader.tool_calls(calls) if calls else None
    refusal = message.get("refusal")
    if refusal is not None:
        refusal = reader.text(refusal, "refusal") or None
    reasoning = message.get("reasoning_content")
    if reasoning is not None:
        reasoning = reader.text(reasoning, "reasoning_content")
        if reasoning:
            extra["reasoning_content"] = reasoning
    if choice.get("logprobs") is not None:
        extra["logprobs"] = choice["logprobs"]
    return GeneratedMessage(
        Message("assistant", content, tool_calls=tool_calls),
        normalize_stop_reason(reader.stop_reason(choice)),
        reader.usage(data),
        extra,
        refusal=refusal,
    )


def read_text(data: Any, provider: str, status: int = 200) -> GeneratedText:
    """A `GeneratedText` from a text completion.

    Raises:
        MalformedResponseError: the answer is not shaped as a text completion.
    """
    reader = _Reader(provider, status)
    choice = reader.first_choice(data)
    extra = reader.extra(data)
    if choice.get("logprobs") is not None:
        extra["logprobs"] = choice["logprobs"]
    return GeneratedText(
        reader.text(choice.get("text"), "the choice's text"),
        normalize_stop_reason(reader.stop_reason(choice)),
        reader.usage(data),
        extra,
    )


def error_from_response(
    status: int,
    raw: bytes,
    headers: Mapping[str, str],
    provider: str,
    secrets: Iterable[str | None],
) -> ProviderError:
    """The normalized error for a failed answer: OpenAI's `{"error": {"message", "type",
    "code"}}` when the body has it, else the body's text; the key never in it."""
    message = _error_message(raw)
    message = redact(message, secrets)
    if len(message) > _MAX_ERROR_LENGTH:
        message = message[: _MAX_ERROR_LENGTH - 3] + "..."
    return error_for_status(
        status, message, provider=provider, retry_after=retry_after_from(headers)
    )


def _error_message(raw: bytes) -> str:
    try:
        data = _json.loads(raw, what="the error body", error=ValueError)
    except ValueError:
        data = None
    message = ""
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
    return message or raw.decode("utf-8", "replace").strip() or "(empty body)"


# -- streams ------------------------------------------------------------------------------------


class StreamState:
    """What a stream of chat (or text) completion chunks has said so far.

    Feed it the lines of a server-sent event stream (`feed`) or chunks already parsed
    (`feed_chunk`, LiteLLM's); it keeps at most `limit` characters of answer text and tool-call
    arguments. Tool calls arrive in pieces (`delta.tool_calls[i]`: the id and name first, the
    arguments' text in parts) and are put back together by their `index`.
    """

    def __init__(self, provider: str, limit: int) -> None:
        self.provider = provider
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.extra: dict[str, Any] = {}
        self.done = False
        self.refusal: list[str] = []
        self._calls: dict[int, tuple[list[str], list[str]]] = {}
        """Tool calls by index: ([id, name], argument pieces)."""
        self._reader = _Reader(provider, 200)

    def feed(self, line: bytes) -> str | None:
        """Read one line of the event stream; return the text delta it carried, if any.

        Raises:
            MalformedResponseError: an event's data is not a JSON chunk of the stream.
            ProviderError: the stream carried an error event.
            ProcessingError: the answer grew past `limit`.
        """
        if not line.startswith(b"data:"):
            return None  # blank separators, comments, `event:`/`id:` fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return None
        chunk = parse_json(payload, self.provider)
        if (
            type(chunk) is dict
            and chunk.get("error") is not None
            and isinstance(chunk["error"], dict)
        ):
            raise error_from_response(500, payload, {}, self.provider, ())
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: Any) -> str | None:
        """Read one parsed chunk; return the text delta it carried, if any (raises as `feed`)."""
        reader = self._reader
        chunk = reader.mapping(chunk, "a stream chunk")
        self.extra.update(reader.extra(chunk))
        usage = reader.usage(chunk)
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None
        if type(choices) is not list:
            raise reader.malformed("a stream chunk's choices are not a list")
        choice = reader.mapping(choices[0], "a stream chunk's choice")
        reason = reader.stop_reason(choice)
        if reason:
            self.finish_reason = reason
        delta = choice.get("delta")
        if delta is not None:
            delta = reader.mapping(delta, "a delta")
            text = reader.text(delta.get("content"), "a delta")
            if delta.get("tool_calls"):
                self._feed_calls(delta["tool_calls"])
            if delta.get("refusal"):
                self.refusal.append(reader.text(delta["refusal"], "a refusal"))
        else:
            text = reader.text(choice.get("text"), "a chunk's text")
        if not text:
            return None
        self._keep(len(text))
        self.parts.append(text)
        return text

    def _keep(self, size: int) -> None:
        self.kept += size
        if self.kept > self.limit:
            raise too_large(self.limit)

    def _feed_calls(self, pieces: Any) -> None:
        reader = self._reader
        if type(pieces) is not list:
            raise reader.malformed("a delta's tool_calls are not a list")
        for piece in pieces:
            piece = reader.mapping(piece, "a tool call delta")
            index = piece.get("index", len(self._calls))
            if type(index) is not int or not 0 <= index < 1024:
                raise reader.malformed(f"a tool call delta's index is {_shown(index)}")
            head, arguments = self._calls.setdefault(index, (["", ""], []))
            if piece.get("id"):
                head[0] = reader.text(piece["id"], "a tool call's id")
            function = reader.mapping(piece.get("function"), "a tool call's function")
            if function.get("name"):
                head[1] = reader.text(function["name"], "a tool call's name")
            part = function.get("arguments")
            if part:
                part = reader.text(part, "a tool call's arguments")
                self._keep(len(part))
                arguments.append(part)

    def tool_calls(self) -> list[ToolCall]:
        """The tool calls the stream carried, whole, in their order."""
        return [
            ToolCall(head[0], FunctionCall(head[1], "".join(arguments) or "{}"))
            for _, (head, arguments) in sorted(self._calls.items())
        ]

    @property
    def said_anything(self) -> bool:
        """Whether the stream carried text, a tool call, a refusal or usage."""
        return bool(self.parts or self._calls or self.refusal) or self.usage is not None

    @property
    def finished(self) -> bool:
        """Whether the stream said it was over (`[DONE]`, or a finish reason)."""
        return self.done or self.finish_reason is not None

    def cut(self) -> ProviderConnectionError:
        """The error for a stream that ended before it said it was over (retryable, though
        only before the first delta was given out)."""
        return ProviderConnectionError(STREAM_CUT, provider=self.provider)

    def message(self) -> GeneratedMessage:
        """The whole answer, as the non-streamed call would have returned it.

        Raises:
            ProviderConnectionError: the stream ended before it said it was over.
        """
        if not self.finished:
            raise self.cut()
        return GeneratedMessage(
            Message("assistant", "".join(self.parts), tool_calls=self.tool_calls() or None),
            normalize_stop_reason(self.finish_reason),
            self.usage,
            self.extra,
            refusal="".join(self.refusal) or None,
        )
