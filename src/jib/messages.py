"""Messages and what a generator returns: `Message`, `GeneratedMessage`, `GeneratedText`, `Usage`.

These are plain classes (slots, no validation beyond the role and the content's kind) because
they are created once per item on the hot path; validation happens at the boundaries
(`Message.from_any`, chat loading). Content parts are in `jib.content`, tool calls in
`jib.tools`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from jib.content import CacheControl, ContentPart, ContentText, part_from_dict
from jib.tools import ToolCall

__all__ = [
    "ROLES",
    "STOP_REASONS",
    "GeneratedMessage",
    "GeneratedText",
    "Message",
    "MessageInput",
    "Role",
    "StopReason",
    "Usage",
    "as_messages",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(get_args(Role))

StopReason = Literal["stop", "length", "content_filter", "tool_calls", "unknown"]
STOP_REASONS: frozenset[str] = frozenset(get_args(StopReason))


class Message:
    """One message of a conversation: a role, and its content as a string or a list of parts.

    >>> Message("user", "Hello")
    Message(role='user', content='Hello')
    >>> from jib.content import ContentImageUrl, ContentText
    >>> image = ContentImageUrl.from_url("https://example.com/cat.png")
    >>> message = Message("user", ["What is this?", image])
    >>> message.content, len(message.content_parts)
    ('What is this?', 2)

    Attributes:
        role: `system`, `user`, `assistant` or `tool`.
        content: the text (for a message of parts, its text parts joined by newlines).
        content_parts: the parts (a string is one `ContentText`; an empty string none).
        tool_calls: the calls an assistant message asks for.
        tool_call_id: on a `tool` message, the call it answers.
        cache_control: a prompt-cache mark for the whole message (`{"type": "ephemeral"}`).

    A string in stays a string out (`to_dict`, JSON, the store), so a text-only conversation
    reads and stores exactly as plain text.
    """

    __slots__ = ("_content", "cache_control", "role", "tool_call_id", "tool_calls")

    _content: str | tuple[ContentPart, ...]

    def __init__(
        self,
        role: Role,
        content: str | Sequence[ContentPart | str | Mapping[str, Any]] = "",
        *,
        tool_calls: Sequence[ToolCall] | None = None,
        tool_call_id: str | None = None,
        cache_control: CacheControl | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"message role must be one of {sorted(ROLES)}, not {role!r}")
        self.role = role
        self._content = content if type(content) is str else _content_of(content)
        self.tool_calls: tuple[ToolCall, ...] = tuple(tool_calls) if tool_calls else ()
        self.tool_call_id = tool_call_id
        self.cache_control = cache_control

    @property
    def content(self) -> str:
        """The text: the string, or the text parts joined by newlines."""
        content = self._content
        if type(content) is str:
            return content
        return "\n".join(part.text for part in content if type(part) is ContentText)

    @content.setter
    def content(self, value: str | Sequence[ContentPart | str | Mapping[str, Any]]) -> None:
        self._content = _content_of(value)

    @property
    def content_parts(self) -> list[ContentPart]:
        """The parts: a string is one `ContentText` (an empty string, none)."""
        content = self._content
        if isinstance(content, str):
            return [ContentText(content)] if content else []
        return list(content)

    @property
    def has_parts(self) -> bool:
        """Whether the content was given as a list of parts (not a plain string)."""
        return type(self._content) is not str

    @classmethod
    def from_any(cls, value: MessageInput, *, default_role: Role = "user") -> Message:
        """Build a message from a `Message`, a mapping in the OpenAI shape (`role`, `content` as
        a string or parts, `tool_calls`, `tool_call_id`) or a plain string."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls(default_role, value)
        if isinstance(value, Mapping):
            try:
                role, content = value["role"], value["content"]
            except KeyError as missing:
                raise ValueError(
                    f"a message mapping needs 'role' and 'content' keys; {missing} is missing"
                ) from None
            calls = value.get("tool_calls")
            return cls(
                role,
                "" if content is None else content,
                tool_calls=[ToolCall.from_dict(call) for call in calls] if calls else None,
                tool_call_id=value.get("tool_call_id"),
                cache_control=value.get("cache_control"),
            )
        raise TypeError(
            "a message must be a Message, a {'role': ..., 'content': ...} mapping or a string, "
            f"not {type(value).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI shape every chat API speaks: `{"role", "content"}` (a string, or the list
        of parts), plus `tool_calls`, `tool_call_id` and `cache_control` when set."""
        content = self._content
        data: dict[str, Any] = {
            "role": self.role,
            "content": content if isinstance(content, str) else [p.to_dict() for p in content],
        }
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.cache_control is not None:
            data["cache_control"] = dict(self.cache_control)
        return data

    def with_cache_control(self, cache_control: CacheControl | None) -> Message:
        """A copy with this prompt-cache mark (`None` clears it)."""
        copy = Message(self.role, "", tool_calls=self.tool_calls, tool_call_id=self.tool_call_id)
        copy._content = self._content
        copy.cache_control = cache_control
        return copy

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.role == other.role
            and self._content == other._content
            and self.tool_calls == other.tool_calls
            and self.tool_call_id == other.tool_call_id
            and self.cache_control == other.cache_control
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [f"role={self.role!r}", f"content={self._content!r}"]
        if self.tool_calls:
            shown.append(f"tool_calls={list(self.tool_calls)!r}")
        if self.tool_call_id is not None:
            shown.append(f"tool_call_id={self.tool_call_id!r}")
        if self.cache_control is not None:
            shown.append(f"cache_control={self.cache_control!r}")
        return f"Message({', '.join(shown)})"

    def __str__(self) -> str:
        text = f"[{self.role}]: {self.content}"
        others = [part for part in self.content_parts if type(part) is not ContentText]
        if others:
            text += "".join(f" [{part.type}]" for part in others)
        for call in self.tool_calls:
            text += f"\n  -> {call.function.name}({call.function.arguments})"
        return text


def _content_of(
    content: str | Sequence[ContentPart | str | Mapping[str, Any]],
) -> str | tuple[ContentPart, ...]:
    if type(content) is str:
        return content
    if isinstance(content, str):
        return str(content)
    if not isinstance(content, Sequence):
        raise TypeError(
            f"message content must be a string or a list of parts, not {type(content).__name__}"
        )
    return tuple(part_from_dict(part) for part in content)


MessageInput = Message | Mapping[str, Any] | str


def as_messages(
    value: MessageInput | Iterable[MessageInput], *, default_role: Role = "user"
) -> list[Message]:
    """Normalize one message or a sequence of messages (any accepted form) to a list."""
    if type(value) is str:  # the common case (a prompt), without `from_any`
        return [Message(default_role, value)]
    if isinstance(value, (Message, str, Mapping)):
        return [Message.from_any(value, default_role=default_role)]
    return [Message.from_any(item, default_role=default_role) for item in value]


@dataclass(slots=True)
class Usage:
    """Token counts of one generation.

    Attributes:
        input_tokens, output_tokens, total_tokens: what the provider counted.
        cached_input_tokens: input tokens read from the provider's prompt cache (part of
            `input_tokens`), where it reports them.
        cache_write_tokens: input tokens written to the prompt cache (Anthropic's), where
            reported.
        reasoning_tokens: output tokens spent reasoning (part of `output_tokens`), where
            reported.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.total_tokens:
            self.total_tokens = self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def __repr__(self) -> str:
        # The cache and reasoning counts only when a provider reported them, so a usage reads
        # as it always has where they do not apply.
        shown = ", ".join(f"{name}={value}" for name, value in self.to_dict().items())
        return f"Usage({shown})"

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict (the cache and reasoning counts only when not zero)."""
        counts = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        # Written out (not a loop over the names): every answer kept or stored is counted here.
        if self.cached_input_tokens:
            counts["cached_input_tokens"] = self.cached_input_tokens
        if self.cache_write_tokens:
            counts["cache_write_tokens"] = self.cache_write_tokens
        if self.reasoning_tokens:
            counts["reasoning_tokens"] = self.reasoning_tokens
        return counts


def normalize_stop_reason(value: str | None) -> StopReason:
    """Map a provider's finish reason to one of `STOP_REASONS` (`unknown` when unrecognised)."""
    if value is None:
        return "unknown"
    lowered = value.lower()
    if lowered in STOP_REASONS:
        return lowered  # type: ignore[return-value]
    return _STOP_REASON_ALIASES.get(lowered, "unknown")


_STOP_REASON_ALIASES: dict[str, StopReason] = {
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
    "max_length": "length",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "safety": "content_filter",
}


@dataclass(slots=True)
class GeneratedMessage:
    """A message a generator produced, with why it stopped and what it cost.

    `attempts` (requests sent, retries included) and `latency_ms` (from the first request's
    start to the answer) are filled by request-based generators; `None` elsewhere.
    """

    message: Message
    stop_reason: StopReason = "unknown"
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None
    latency_ms: float | None = None
    refusal: str | None = None
    """The provider's refusal text, when the model declined (OpenAI's `message.refusal`)."""

    @property
    def content(self) -> str:
        """The generated text."""
        return self.message.content


@dataclass(slots=True)
class GeneratedText:
    """Text a generator produced by completion, with why it stopped and what it cost.

    `attempts` and `latency_ms` as for `GeneratedMessage`.
    """

    text: str
    stop_reason: StopReason = "unknown"
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None
    latency_ms: float | None = None


def check_batch(kind: str, inputs: Sequence[Any], params: Sequence[Any]) -> None:
    """Raise `ValueError` when a batch's inputs and params differ in length."""
    if len(inputs) != len(params):
        raise ValueError(
            f"{kind}: got {len(inputs)} inputs but {len(params)} params; pass one params per input"
        )
