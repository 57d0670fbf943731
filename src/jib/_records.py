"""The validated JSON form of `Chat` and `Completion` records.

Loaded lazily by `jib.chat` the first time a record is serialized or loaded, so `import jib`
does not pay for building these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jib.messages import Role, StopReason
from jib.params import GenerateParams

SCHEMA_VERSION = 1
"""Version of the JSON form of records; bump it (and teach loading the old form) on a change."""


class MessageModel(BaseModel):
    """A stored message."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class UsageModel(BaseModel):
    """Stored token counts."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class ErrorModel(BaseModel):
    """A stored error: its type name and message."""

    type: str
    message: str


class RecordModel(BaseModel):
    """Fields common to chats and completions."""

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    id: str
    timestamp: datetime
    generator_id: str | None = None
    params: GenerateParams | None = None
    stop_reason: StopReason = "unknown"
    usage: UsageModel | None = None
    failed: bool = False
    error: ErrorModel | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    attempts: int | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"this record has schema_version {version}, written by a newer jib; this jib "
                f"reads up to {SCHEMA_VERSION}: upgrade jib to load it"
            )
        return version


class ChatModel(RecordModel):
    """A stored chat."""

    kind: Literal["chat"] = "chat"
    messages: list[MessageModel] = Field(default_factory=list)
    generated: list[MessageModel] = Field(default_factory=list)


class CompletionModel(RecordModel):
    """A stored completion."""

    kind: Literal["completion"] = "completion"
    text: str = ""
    generated: str = ""
