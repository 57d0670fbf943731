"""`Chat` and `Completion`: the records a pipeline run produces, and their JSON form.

Records are dataclasses (one is made per item on the hot path). Their JSON form is checked by
pydantic models when loaded, and loading rebuilds the generator from the stored identifier. A
stored identifier is data, not code: it is rebuilt untrusted (see `jib.trust`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from jib._unicode import escape_surrogates
from jib.errors import InvalidGeneratorError, JibError
from jib.generator.base import Generator
from jib.identifiers import get_generator
from jib.messages import Message, MessageInput, StopReason, Usage, as_messages
from jib.params import GenerateParams
from jib.trust import TrustPolicy, policy_for

if TYPE_CHECKING:
    from types import ModuleType

    from jib._records import ChatModel, CompletionModel, RecordModel
    from jib.pipeline.chat import ChatPipeline
    from jib.pipeline.completion import CompletionPipeline

__all__ = ["Chat", "Completion", "StoredError"]


def _records() -> ModuleType:
    # The pydantic models that check stored records are only needed when records cross a
    # boundary; importing them lazily keeps `import jib` fast.
    from jib import _records

    return _records


class StoredError(JibError):
    """The error a loaded record failed with: its original type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _identifier_of(generator: Generator | None, params: GenerateParams | None) -> str | None:
    if generator is None:
        return None
    try:
        return generator.to_identifier(params)
    except InvalidGeneratorError:
        return None


def _error_dict(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    if isinstance(error, StoredError):
        return {"type": error.type_name, "message": error.message}
    return {"type": type(error).__name__, "message": str(error)}


@dataclass(slots=True, eq=False)
class _Record:
    generator: Generator | None = None
    params: GenerateParams | None = None
    stop_reason: StopReason = "unknown"
    usage: Usage | None = None
    failed: bool = False
    error: BaseException | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    id: str = field(default_factory=lambda: os.urandom(16).hex())
    timestamp: datetime = field(default_factory=_now)
    _generator_id: str | None = None

    @property
    def generator_id(self) -> str | None:
        """The identifier of the generator that made this record (secrets left out)."""
        if self._generator_id is None:
            self._generator_id = _identifier_of(self.generator, self.params)
        return self._generator_id

    def _common_dict(self) -> dict[str, Any]:
        return {
            "schema_version": _records().SCHEMA_VERSION,
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "generator_id": self.generator_id,
            "params": self.params.model_dump(exclude_none=True) if self.params else None,
            "stop_reason": self.stop_reason,
            "usage": self.usage.to_dict() if self.usage else None,
            "failed": self.failed,
            "error": _error_dict(self.error),
            "metadata": self.metadata,
            "extra": self.extra,
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "cost_usd": self.cost_usd,
        }


@dataclass(slots=True, eq=False)
class Chat(_Record):
    """One conversation: the messages sent and the message(s) generated in reply.

    Attributes:
        messages: what was sent.
        generated: what the generator answered (empty when `failed`).
        failed / error: whether the generation failed, and with what.
        attempts: requests sent for it, retries included (request-based generators; `None`
            for local models and when nothing was sent).
        latency_ms: milliseconds from the first request's start to the answer, retries
            included (for local models: the batch's time).
        cost_usd: what it cost in US dollars, when the price is known (`jib run` sets it;
            see `jib.cost`).
    """

    messages: list[Message] = field(default_factory=list)
    generated: list[Message] = field(default_factory=list)

    @property
    def all(self) -> list[Message]:
        """Sent and generated messages, in order."""
        return [*self.messages, *self.generated]

    @property
    def last(self) -> Message:
        """The last message (the generated one, when there is one)."""
        if self.generated:
            return self.generated[-1]
        if not self.messages:
            raise ValueError("this chat has no messages")
        return self.messages[-1]

    @property
    def content(self) -> str:
        """The text of the last message."""
        return self.last.content

    @property
    def conversation(self) -> str:
        """A readable transcript: one `[role]: content` block per message."""
        return "\n\n".join(str(message) for message in self.all)

    def continue_(self, messages: MessageInput | Sequence[MessageInput]) -> ChatPipeline:
        """A new pipeline that carries this conversation and adds `messages` after it."""
        return self._pipeline([*self.all, *as_messages(messages)])

    def fork(self, messages: MessageInput | Sequence[MessageInput]) -> ChatPipeline:
        """Like `continue_`: a new pipeline from this conversation plus `messages`."""
        return self.continue_(messages)

    def restart(self) -> ChatPipeline:
        """A new pipeline that sends the same messages again (the generated ones dropped)."""
        return self._pipeline(list(self.messages))

    def _pipeline(self, messages: list[Message]) -> ChatPipeline:
        if self.generator is None:
            raise ValueError("this chat has no generator to continue with")
        return self.generator.chat(messages, self.params).meta(**self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this chat; secrets are not in it."""
        data = self._common_dict()
        data["kind"] = "chat"
        data["messages"] = [message.to_dict() for message in self.messages]
        data["generated"] = [message.to_dict() for message in self.generated]
        return data

    def to_json(self) -> str:
        """This chat as JSON text (see `to_dict`)."""
        data = escape_surrogates(self.to_dict())  # JSON is UTF-8: no lone surrogates
        text: str = _records().ChatModel.model_validate(data).model_dump_json()
        return text

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> Chat:
        """Load a chat from `to_dict` output, rebuilding its generator from the identifier.

        Args:
            data: what `to_dict` returned (or the same read back from JSON).
            rebuild_generator: rebuild the generator from the stored identifier.
            trusted: how far to trust that identifier. By default it is data: it may not read
                environment variables beyond the provider key ones, send your secrets to a
                host it chose, or run code (see `jib.trust`); `TrustPolicy.from_env()` applies.
                Pass a `TrustPolicy` to allow more, or `True` for a chat you made yourself.

        Raises:
            pydantic.ValidationError: the data is not a chat, or was written by a newer jib
                (its `schema_version` is above `jib._records.SCHEMA_VERSION`).
            UntrustedIdentifierError: the identifier wants what `trusted` does not allow (the
                message says how to allow it).
            InvalidGeneratorError: the generator cannot be rebuilt (pass
                `rebuild_generator=False` to load the chat without it).
        """
        record = _records().ChatModel.model_validate(data)
        return cls._from_record(record, rebuild_generator, trusted)

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> Chat:
        """Load a chat from `to_json` output (see `from_dict`)."""
        record = _records().ChatModel.model_validate_json(text)
        return cls._from_record(record, rebuild_generator, trusted)

    @classmethod
    def _from_record(
        cls, record: ChatModel, rebuild_generator: bool, trusted: bool | TrustPolicy
    ) -> Chat:
        return cls(
            messages=[Message(m.role, m.content) for m in record.messages],
            generated=[Message(m.role, m.content) for m in record.generated],
            **_common_fields(record, rebuild_generator, trusted),
        )

    def __repr__(self) -> str:
        state = "failed" if self.failed else self.stop_reason
        return (
            f"Chat(id={self.id!r}, generator={self.generator_id!r}, "
            f"messages={len(self.messages)}, generated={len(self.generated)}, {state})"
        )


@dataclass(slots=True, eq=False)
class Completion(_Record):
    """One text completion: the text sent and the text generated after it."""

    text: str = ""
    generated: str = ""

    @property
    def all(self) -> str:
        """The sent text followed by the generated text."""
        return self.text + self.generated

    @property
    def last(self) -> str:
        """The last text: the generated one, or the sent text when nothing was generated."""
        return self.generated or self.text

    @property
    def content(self) -> str:
        """The generated text."""
        return self.generated

    @property
    def conversation(self) -> str:
        """The whole text, sent then generated (the counterpart of `Chat.conversation`)."""
        return self.all

    def continue_(self, text: str) -> CompletionPipeline:
        """A new pipeline completing this text, its completion, and `text`."""
        return self._pipeline(self.all + text)

    def fork(self, text: str) -> CompletionPipeline:
        """Like `continue_`: a new pipeline from this completion plus `text`."""
        return self.continue_(text)

    def restart(self) -> CompletionPipeline:
        """A new pipeline that sends the same text again."""
        return self._pipeline(self.text)

    def _pipeline(self, text: str) -> CompletionPipeline:
        if self.generator is None:
            raise ValueError("this completion has no generator to continue with")
        return self.generator.complete(text, self.params).meta(**self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this completion; secrets are not in it."""
        data = self._common_dict()
        data["kind"] = "completion"
        data["text"] = self.text
        data["generated"] = self.generated
        return data

    def to_json(self) -> str:
        """This completion as JSON text."""
        data = escape_surrogates(self.to_dict())  # JSON is UTF-8: no lone surrogates
        text: str = _records().CompletionModel.model_validate(data).model_dump_json()
        return text

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> Completion:
        """Load a completion from `to_dict` output (see `Chat.from_dict`)."""
        record = _records().CompletionModel.model_validate(data)
        return cls._from_record(record, rebuild_generator, trusted)

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> Completion:
        """Load a completion from `to_json` output (see `Chat.from_dict`)."""
        record = _records().CompletionModel.model_validate_json(text)
        return cls._from_record(record, rebuild_generator, trusted)

    @classmethod
    def _from_record(
        cls, record: CompletionModel, rebuild_generator: bool, trusted: bool | TrustPolicy
    ) -> Completion:
        return cls(
            text=record.text,
            generated=record.generated,
            **_common_fields(record, rebuild_generator, trusted),
        )

    def __repr__(self) -> str:
        state = "failed" if self.failed else self.stop_reason
        return f"Completion(id={self.id!r}, generator={self.generator_id!r}, {state})"


def _common_fields(
    record: RecordModel, rebuild_generator: bool, trusted: bool | TrustPolicy
) -> dict[str, Any]:
    generator = None
    if rebuild_generator and record.generator_id:
        generator = get_generator(record.generator_id)
        policy = policy_for(trusted)
        if policy is not None:
            # Checked with the stored params: they go with the generator when continuing.
            policy.check_generator(generator, identifier=record.generator_id, params=record.params)
    return {
        "generator": generator,
        "_generator_id": record.generator_id,
        "params": record.params,
        "stop_reason": record.stop_reason,
        "usage": Usage(**record.usage.model_dump()) if record.usage else None,
        "failed": record.failed,
        "error": StoredError(record.error.type, record.error.message) if record.error else None,
        "metadata": record.metadata,
        "extra": record.extra,
        "attempts": record.attempts,
        "latency_ms": record.latency_ms,
        "cost_usd": record.cost_usd,
        "id": record.id,
        "timestamp": record.timestamp,
    }
