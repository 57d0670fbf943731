"""Tools: what a model may call (`ToolDefinition`) and the calls it makes (`ToolCall`).

Both follow the OpenAI wire shape, which every provider of jib reads or LiteLLM translates from:

- `ToolDefinition(function=FunctionDefinition(name, description, parameters))`, `parameters` a
  JSON Schema object; `GenerateParams.tools` takes these or the same as plain dicts;
- `ToolCall(id, function=FunctionCall(name, arguments))` on an assistant message, `arguments`
  the provider's JSON text as it came (parse it with `ToolCall.parsed_arguments()`); the answer
  goes back as a `Message("tool", result, tool_call_id=call.id)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FunctionCall", "FunctionDefinition", "ToolCall", "ToolDefinition"]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The function a tool call names, and its arguments as the provider's JSON text."""

    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call a model asked for.

    >>> call = ToolCall("call_1", FunctionCall("get_weather", '{"city": "Paris"}'))
    >>> call.parsed_arguments()
    {'city': 'Paris'}
    """

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"

    def parsed_arguments(self) -> Any:
        """The arguments, parsed from their JSON text.

        Raises:
            ValueError: the model wrote arguments that are not JSON.
        """
        from jib import _json

        try:
            return _json.loads(
                self.function.arguments or "{}", what="the arguments", error=ValueError
            )
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the arguments of {self.function.name!r} are not JSON ({exc.msg} at {exc.pos})"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape."""
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.function.name, "arguments": self.function.arguments},
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ToolCall:
        """A call from its OpenAI wire shape; `arguments` given as an object are written as JSON.

        Raises:
            ValueError: the call has no function name.
        """
        function = value.get("function") if isinstance(value, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError("a tool call needs function.name")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return cls(str(value.get("id") or ""), FunctionCall(function["name"], arguments))


class FunctionDefinition(BaseModel):
    """A function a model may call: its name, what it does, and its parameters (JSON Schema)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDefinition(BaseModel):
    """A tool a model may call (OpenAI's shape: `{"type": "function", "function": {…}}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = "function"
    function: FunctionDefinition

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape."""
        return self.model_dump(exclude_none=True)
