"""The validated JSON form of `Chat` and `Completion` records.

Loaded lazily by `jib.chat` the first time a record is serialized or loaded, so `import jib`
does not pay for building these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jib.messages import Role, StopReason
from jib.params import GenerateParams


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

    schema_version: int = 1  # jib.chat.SCHEMA_VERSION
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


class ChatModel(RecordModel):
    """A stored chat."""

    kind: str = "chat"
    messages: list[MessageModel] = Field(default_factory=list)
    generated: list[MessageModel] = Field(default_factory=list)


class CompletionModel(RecordModel):
    """A stored completion."""

    kind: str = "completion"
    text: str = ""
    generated: str = ""
