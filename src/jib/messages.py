"""Messages and what a generator returns: `Message`, `GeneratedMessage`, `GeneratedText`, `Usage`.

These are plain dataclasses because they are created once per item on the hot path; validation
happens at the boundaries (`Message.from_any`, chat loading), not on every construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

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


@dataclass(slots=True)
class Message:
    """One message of a conversation.

    >>> Message("user", "Hello")
    Message(role='user', content='Hello')
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role must be one of {sorted(ROLES)}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be a string, not {type(self.content).__name__}")

    @classmethod
    def from_any(cls, value: MessageInput, *, default_role: Role = "user") -> Message:
        """Build a message from a `Message`, a `{"role", "content"}` mapping or a plain string."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls(default_role, value)
        if isinstance(value, Mapping):
            try:
                return cls(value["role"], value["content"])
            except KeyError as missing:
                raise ValueError(
                    f"a message mapping needs 'role' and 'content' keys; {missing} is missing"
                ) from None
        raise TypeError(
            "a message must be a Message, a {'role': ..., 'content': ...} mapping or a string, "
            f"not {type(value).__name__}"
        )

    def to_dict(self) -> dict[str, str]:
        """`{"role": ..., "content": ...}`, the shape every chat API speaks."""
        return {"role": self.role, "content": self.content}

    def __str__(self) -> str:
        return f"[{self.role}]: {self.content}"


MessageInput = Message | Mapping[str, Any] | str


def as_messages(
    value: MessageInput | Iterable[MessageInput], *, default_role: Role = "user"
) -> list[Message]:
    """Normalize one message or a sequence of messages (any accepted form) to a list."""
    if isinstance(value, (Message, str, Mapping)):
        return [Message.from_any(value, default_role=default_role)]
    return [Message.from_any(item, default_role=default_role) for item in value]


@dataclass(slots=True)
class Usage:
    """Token counts of one generation."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.total_tokens:
            self.total_tokens = self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


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
