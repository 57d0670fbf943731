"""`GenerateParams`: the sampling parameters every generator understands."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jib.tools import ToolDefinition

__all__ = ["GenerateParams", "ToolChoice", "response_format_for"]

ToolChoice = Literal["auto", "none", "required"] | dict[str, Any]
"""`auto`, `none`, `required`, or `{"type": "function", "function": {"name": …}}` for one tool."""


class GenerateParams(BaseModel):
    """Sampling parameters for one generation.

    Every field is optional; `None` means "not set, use the provider's default". Numbers must be
    finite (`nan` and `inf` are refused). Provider-specific parameters go in `extra` and are
    passed through unchanged.

    Beyond sampling: `tools` (`ToolDefinition`s or the same as OpenAI-shaped dicts),
    `tool_choice`, `parallel_tool_calls`, `response_format` (`{"type": "json_object"}`,
    `{"type": "json_schema", "json_schema": {…}}`, or a pydantic model class, written as its
    JSON schema), `modalities` (`["text", "audio"]`) and `audio` (`{"voice", "format"}`).

    >>> GenerateParams(temperature=0.2).merge_with(GenerateParams(max_tokens=64)).to_dict()
    {'temperature': 0.2, 'max_tokens': 64}
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, defer_build=True, allow_inf_nan=False
    )

    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    timeout: float | None = Field(default=None, gt=0, description="Seconds to wait for an answer.")
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("response_format", mode="before")
    @classmethod
    def _schema_of_model(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return response_format_for(value)
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("stop")
    @classmethod
    def _stop_sequences_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(item == "" for item in value):
            raise ValueError("stop sequences must not be empty strings")
        return value or None

    def merge_with(self, *others: GenerateParams | None) -> GenerateParams:
        """Return new params: `self` overridden by each of `others` in turn.

        Later params win; fields they leave unset (`None`) do not override, so a merge can set
        a field but never unset one. A later `stop` list replaces an earlier one (lists are not
        concatenated). `extra` dicts are merged key by key, later keys winning.
        """
        # The fields' own dicts: iterating a model goes through pydantic per field.
        merged = {name: value for name, value in self.__dict__.items() if value is not None}
        extra = dict(self.extra)
        for other in others:
            if other is None:
                continue
            for name, value in other.__dict__.items():
                if name == "extra":
                    extra.update(value)
                elif value is not None:
                    merged[name] = value
        merged["extra"] = extra
        return GenerateParams.model_construct(**merged)

    def to_dict(self) -> dict[str, Any]:
        """The set parameters as a flat dict of plain values (tools as dicts), with `extra`
        merged in (extra keys win)."""
        # The fields' own dict: iterating the model goes through pydantic per field.
        data = {
            name: value
            for name, value in self.__dict__.items()
            if value is not None and name != "extra"
        }
        tools = data.get("tools")
        if tools is not None:
            data["tools"] = [tool.to_dict() for tool in tools]
        data.update(self.extra)
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if value is not None and value != {}:
                yield name, value

    def is_empty(self) -> bool:
        """True when no parameter is set."""
        return not self.to_dict()


def response_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """The `response_format` asking for JSON that validates as `model` (OpenAI's strict
    `json_schema` shape, which LiteLLM translates for other providers).

    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    >>> response_format_for(City)["json_schema"]["name"]
    'City'
    """
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }
