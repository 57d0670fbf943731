"""`Chat` and `Completion`: the records a pipeline run produces, and their JSON form.

Records are dataclasses (one is made per item on the hot path). Their JSON form is checked by
pydantic models when loaded, and loading rebuilds the generator from the stored identifier. A
stored identifier is data, not code: it is rebuilt untrusted (see `jib.trust`).

Loading many records (`Chat.from_dicts`, `Chat.from_jsonl`, a store's `query`) follows one rule:
one bad record never spoils the rest. A record that cannot be read at all (not JSON, not a
record, a field of the wrong type, written by a newer jib) is skipped with an
`UnreadableRecordWarning` naming it and saying why; a record whose generator cannot be rebuilt
here (a provider not registered, an identifier the trust policy refuses, a spec that does not
compile) loads without it, with a `GeneratorWarning`; stored params that stopped being valid are
dropped, with a `GeneratorWarning`. Loading one record (`from_dict`, `from_json`) raises instead.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jib._record_format import format_version
from jib._unicode import escape_surrogates
from jib.errors import GeneratorWarning, InvalidGeneratorError, JibError
from jib.generator.base import Generator
from jib.identifiers import get_generator
from jib.messages import Message, MessageInput, StopReason, Usage, as_messages
from jib.params import GenerateParams
from jib.trust import TrustPolicy, policy_for

if TYPE_CHECKING:
    from types import ModuleType

    from jib._records import (
        AnyRecordModel,
        ChatModel,
        CompletionModel,
        JsonLinesSource,
        RecordModel,
    )
    from jib.pipeline.chat import ChatPipeline
    from jib.pipeline.completion import CompletionPipeline

__all__ = [
    "BatchDicts",
    "Chat",
    "Completion",
    "Record",
    "StoredError",
    "UnreadableRecordError",
    "UnreadableRecordWarning",
    "UnwritableRecordError",
    "batch_context",
    "check_record_dict",
    "load_record",
    "warn_unreadable",
]


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


class UnreadableRecordError(JibError, ValueError):
    """A record cannot be loaded: its data is not a chat or completion this jib can read.

    Attributes:
        what: the record, as messages name it (`stored chat 0a1b…`, `record (line 3)`).
        reason: why, by field (never the stored values).
        record_id: the record's id, when its data has one.
    """

    def __init__(self, what: str, reason: str, record_id: str | None = None) -> None:
        self.what = what
        self.reason = reason
        self.record_id = record_id
        super().__init__(f"{what} cannot be read: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what, self.reason, self.record_id))


class UnwritableRecordError(JibError, ValueError):
    """A record holds a value that has no JSON form, so it cannot be stored or written."""


class UnreadableRecordWarning(GeneratorWarning):
    """A record that cannot be loaded was skipped, and the rest of the batch or store loaded.

    The message names the record (its id, or its line) and says why; `record_id` and `reason`
    hold the same (`record_id` is `None` when not even the id can be read).
    """

    def __init__(self, message: str, record_id: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.record_id = record_id
        self.reason = reason


_now: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)
"""The time now, in UTC (a partial, not a function: one Python frame fewer per record)."""


def _identifier_of(generator: Generator | None, params: GenerateParams | None) -> str | None:
    if generator is None:
        return None
    try:
        return generator.to_identifier(params)
    except InvalidGeneratorError:
        return None


def _output_json(output: Any) -> Any:
    """The JSON form of a chat's structured output.

    Raises:
        UnwritableRecordError: it has none.
    """
    from pydantic import BaseModel
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        if isinstance(output, BaseModel):
            return output.model_dump(mode="json")
        return to_jsonable_python(output)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise UnwritableRecordError(
            f"this chat's output (a {type(output).__name__}) has no JSON form, so the chat "
            "cannot be written: set it to JSON data or a pydantic model instance"
        ) from exc


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

    def _common_dict(self, shared: BatchDicts | None) -> dict[str, Any]:
        if shared is None:
            generator_id = self.generator_id
            params = self.params.model_dump(exclude_none=True) if self.params else None
        else:
            generator_id, params = shared.generator_id(self), shared.params_dict(self.params)
        return {
            "schema_version": None,  # first, and set last (`format_version`)
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "generator_id": generator_id,
            "params": params,
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
        output: the structured answer, validated (`pipeline.structured(Model)`: an instance of
            `Model`; a JSON schema: the parsed JSON); `None` when none was asked for. It is
            kept as JSON: a chat loaded from JSON or a store holds the plain JSON (for a model
            instance, what `model_dump(mode="json")` gave).
    """

    messages: list[Message] = field(default_factory=list)
    generated: list[Message] = field(default_factory=list)
    output: Any = None

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
        """A JSON-ready dict of this chat; secrets are not in it.

        Messages are in the OpenAI shape (`Message.to_dict`: a string stays a string; parts,
        tool calls, `tool_call_id` and `cache_control` when there are any). `output`, when set,
        is its JSON form: a pydantic model instance as `model_dump(mode="json")` (loading gives
        that plain JSON back, not the model: validate it again with `Model.model_validate`).

        Raises:
            UnwritableRecordError: `output` has no JSON form.
        """
        return self._to_dict(None)

    def _to_dict(self, shared: BatchDicts | None) -> dict[str, Any]:
        data = self._common_dict(shared)
        data["kind"] = "chat"
        data["messages"] = [message.to_dict() for message in self.messages]
        data["generated"] = [message.to_dict() for message in self.generated]
        if self.output is not None:
            data["output"] = _output_json(self.output)
        data["schema_version"] = format_version(data)
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
                (its `schema_version` is above `jib._record_format.RECORD_FORMAT_VERSION`).
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
    def from_dicts(
        cls,
        items: Iterable[Any],
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> list[Chat]:
        """Load many chats (e.g. the array `jib log --json` prints); one bad item never fails
        the rest.

        An item that is not a chat this jib can read is skipped with an
        `UnreadableRecordWarning` naming it (its id, else its place: `item 3`) and saying why.
        A chat whose generator cannot be rebuilt (see `from_dict` for `trusted`) loads without
        it, with a `GeneratorWarning`; `chat.generator_id` keeps the identifier.
        """
        return _load_all(_records().numbered(items), "chat", rebuild_generator, trusted)

    @classmethod
    def from_jsonl(
        cls,
        source: JsonLinesSource,
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> list[Chat]:
        """Load the chats of JSON Lines (what `jib export` and `store.export_jsonl` write), as
        `from_dicts` does: a bad line is skipped with a warning naming it (`line 3`).

        Args:
            source: the text of the lines (a `str` is text, not a file name), a `Path`, or
                lines (an open file).

        Lines holding completions are skipped as not chats (load them with
        `Completion.from_jsonl`). Parts an export wrote as files beside it
        (`store.export_jsonl(path, parts_as_files=True)`) are read back when `source` is the
        export's `Path`, from its folder only: a line referring to a file by an absolute path,
        through `..` or a link out of the folder is skipped as unreadable, as is one read from
        text or an open file (there is no folder to read from).
        """
        records = _records()
        base = Path(source).parent if isinstance(source, os.PathLike) else None
        lines = records.with_files(records.json_lines(source), base)
        return _load_all(lines, "chat", rebuild_generator, trusted)

    @classmethod
    def _from_record(
        cls, record: ChatModel, rebuild_generator: bool, trusted: bool | TrustPolicy
    ) -> Chat:
        generator = _rebuilt_generator(record, trusted) if rebuild_generator else None
        return cls._from_model(record, generator)

    @classmethod
    def _from_model(cls, record: ChatModel, generator: Generator | None) -> Chat:
        return cls(
            messages=[m.to_message() for m in record.messages],
            generated=[m.to_message() for m in record.generated],
            output=record.output,
            **_fields(record, generator),
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
        return self._to_dict(None)

    def _to_dict(self, shared: BatchDicts | None) -> dict[str, Any]:
        data = self._common_dict(shared)
        data["kind"] = "completion"
        data["text"] = self.text
        data["generated"] = self.generated
        data["schema_version"] = format_version(data)
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
    def from_dicts(
        cls,
        items: Iterable[Any],
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> list[Completion]:
        """Load many completions; one bad item never fails the rest (see `Chat.from_dicts`)."""
        return _load_all(_records().numbered(items), "completion", rebuild_generator, trusted)

    @classmethod
    def from_jsonl(
        cls,
        source: JsonLinesSource,
        *,
        rebuild_generator: bool = True,
        trusted: bool | TrustPolicy = False,
    ) -> list[Completion]:
        """Load the completions of JSON Lines; a bad line is skipped (see `Chat.from_jsonl`)."""
        return _load_all(_records().json_lines(source), "completion", rebuild_generator, trusted)

    @classmethod
    def _from_record(
        cls, record: CompletionModel, rebuild_generator: bool, trusted: bool | TrustPolicy
    ) -> Completion:
        generator = _rebuilt_generator(record, trusted) if rebuild_generator else None
        return cls._from_model(record, generator)

    @classmethod
    def _from_model(cls, record: CompletionModel, generator: Generator | None) -> Completion:
        return cls(text=record.text, generated=record.generated, **_fields(record, generator))

    def __repr__(self) -> str:
        state = "failed" if self.failed else self.stop_reason
        return f"Completion(id={self.id!r}, generator={self.generator_id!r}, {state})"


def _rebuilt_generator(record: RecordModel, trusted: bool | TrustPolicy) -> Generator | None:
    """The generator of a stored record, rebuilt from its identifier under the trust policy.

    Raises:
        UntrustedIdentifierError: the identifier wants what `trusted` does not allow.
        InvalidGeneratorError: it cannot be rebuilt here (any failure of a provider or library
            while building it becomes one: a stored record is data).
    """
    if not record.generator_id:
        return None
    try:
        generator = get_generator(record.generator_id)
        policy = policy_for(trusted)
        if policy is not None:
            # Checked with the stored params: they go with the generator when continuing.
            policy.check_generator(generator, identifier=record.generator_id, params=record.params)
    except JibError:
        raise
    except Exception as exc:  # not a jib error: a library's own, with text we do not control
        raise InvalidGeneratorError(
            f"the stored identifier cannot be rebuilt: building it raised {type(exc).__name__}"
        ) from exc
    return generator


def _fields(record: RecordModel, generator: Generator | None) -> dict[str, Any]:
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


class BatchDicts:
    """Makes the `to_dict()` of a batch's records, working out what they share once.

    The records of one run share their generator and params object; writing the generator's
    identifier costs more than all the rest of a record's dict, so each (generator, params)
    pair is written once per batch, and each params object dumped once. The params dict is then
    one object shared by the records' dicts: read it, do not change it. Use one instance for
    one batch: it keeps the objects it has seen (their identity is the key) until dropped.
    """

    def __init__(self) -> None:
        self._identifiers: dict[tuple[int, int], tuple[Any, str | None]] = {}
        self._params: dict[int, tuple[GenerateParams, dict[str, Any]]] = {}

    def to_dict(self, record: Chat | Completion) -> dict[str, Any]:
        """`record.to_dict()`, sharing the identifier and params dict with its batch."""
        return record._to_dict(self)

    def generator_id(self, record: _Record) -> str | None:
        """`record.generator_id`, written once per (generator, params) pair."""
        if record._generator_id is not None or record.generator is None:
            return record.generator_id
        key = (id(record.generator), id(record.params))
        found = self._identifiers.get(key)
        if found is None:
            identifier = _identifier_of(record.generator, record.params)
            found = self._identifiers[key] = ((record.generator, record.params), identifier)
        record._generator_id = found[1]
        return found[1]

    def params_dict(self, params: GenerateParams | None) -> dict[str, Any] | None:
        """The dict form of `params` (`None` for none), dumped once per params object."""
        if not params:
            return None
        found = self._params.get(id(params))
        if found is None:
            found = self._params[id(params)] = (params, params.model_dump(exclude_none=True))
        return found[1]


# -- loading many records: one bad record never spoils the rest -----------------------------------

Record = Chat | Completion
"""A chat or a completion."""

Kind = Literal["chat", "completion"]

_SHOWN_VALUE = 40
"""Characters of a dropped param's value shown in the warning."""


def _label(data: Any, stored: bool, position: str | None) -> Callable[[], str]:
    """How messages name the record (worked out only when a message needs it)."""
    return lambda: _records().record_label(data, stored=stored, position=position)


def _checked(
    data: Any, kind: Kind | None, label: Callable[[], str], context: dict[str, Any] | None = None
) -> tuple[AnyRecordModel, list[str]]:
    """The validated model of `data` and the params dropped from it (a `GeneratorWarning` says
    which: they stopped being valid).

    Raises:
        UnreadableRecordError: `data` is not a record (of `kind`, when given).
    """
    records = _records()
    try:
        model, dropped = records.record_model(data, kind, context)
    except records.RecordProblem as exc:
        raise UnreadableRecordError(label(), str(exc), records.record_id_of(data)) from None
    if dropped:
        shown = ", ".join(f"{name}={data['params'][name]!r:.{_SHOWN_VALUE}}" for name in dropped)
        warnings.warn(
            f"{label()}: its stored params {shown} are not valid any more and were dropped",
            GeneratorWarning,
            stacklevel=4,
        )
    return model, dropped


def check_record_dict(
    data: Any,
    *,
    kind: Kind | None = None,
    stored: bool = False,
    position: str | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`data` checked to be a record dict (`to_dict` form), params no longer valid dropped.

    Keys beyond the record's own (a store adds `run`, `prompt_id`, `sample_index`) are kept.
    `context` as for `load_record`.

    Raises:
        UnreadableRecordError: it is not a record this jib can read.
    """
    _, dropped = _checked(data, kind, _label(data, stored, position), context)
    if not dropped:
        return dict(data)
    return {**data, "params": {k: v for k, v in data["params"].items() if k not in dropped}}


def load_record(
    data: Any,
    *,
    kind: Kind | None = None,
    rebuild_generator: bool = True,
    trusted: bool | TrustPolicy = False,
    stored: bool = False,
    position: str | None = None,
    context: dict[str, Any] | None = None,
) -> Record:
    """Load one record of a batch: a generator that cannot be rebuilt is left out, with a
    `GeneratorWarning` saying why (its `generator_id` keeps the identifier).

    `context` is shared by the records of one batch (`batch_context()`): their equal content
    parts then load as one part, held once.

    Raises:
        UnreadableRecordError: `data` is not a record this jib can read.
    """
    label = _label(data, stored, position)
    model, _ = _checked(data, kind, label, context)
    generator = None
    if rebuild_generator:
        try:
            generator = _rebuilt_generator(model, trusted)
        except JibError as exc:
            warnings.warn(
                f"{label()}: loaded without its generator, which cannot be rebuilt: {exc}",
                GeneratorWarning,
                stacklevel=3,
            )
    if model.kind == "chat":
        return Chat._from_model(model, generator)
    return Completion._from_model(model, generator)


def batch_context() -> dict[str, Any]:
    """What the records of one batch share while loading (see `load_record`)."""
    context: dict[str, Any] = _records().parts_cache()
    return context


def warn_unreadable(error: UnreadableRecordError, *, stacklevel: int = 2) -> None:
    """Say that the record `error` is about was skipped (an `UnreadableRecordWarning`)."""
    message = f"{error.what} cannot be read and was skipped: {error.reason}"
    warnings.warn(
        UnreadableRecordWarning(message, error.record_id, error.reason), stacklevel=stacklevel + 1
    )


def _load_all(
    items: Iterable[tuple[str, Any]],
    kind: Kind,
    rebuild_generator: bool,
    trusted: bool | TrustPolicy,
) -> list[Any]:
    loaded = []
    context = batch_context()
    for position, data in items:
        try:
            if isinstance(data, _records().RecordProblem):
                raise UnreadableRecordError(f"record ({position})", str(data))
            loaded.append(
                load_record(
                    data,
                    kind=kind,
                    rebuild_generator=rebuild_generator,
                    trusted=trusted,
                    position=position,
                    context=context,
                )
            )
        except UnreadableRecordError as exc:
            warn_unreadable(exc, stacklevel=3)
    return loaded
