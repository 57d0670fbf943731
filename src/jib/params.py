"""`GenerateParams`: the sampling parameters every generator understands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["GenerateParams"]


class GenerateParams(BaseModel):
    """Sampling parameters for one generation.

    Every field is optional; `None` means "not set, use the provider's default". Numbers must be
    finite (`nan` and `inf` are refused). Provider-specific parameters go in `extra` and are
    passed through unchanged.

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
    extra: dict[str, Any] = Field(default_factory=dict)

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
        merged = self.model_dump(exclude_none=True)
        extra = dict(self.extra)
        for other in others:
            if other is None:
                continue
            for name, value in other:
                if name == "extra":
                    extra.update(value)
                elif value is not None:
                    merged[name] = value
        merged["extra"] = extra
        return GenerateParams.model_construct(**merged)

    def to_dict(self) -> dict[str, Any]:
        """The set parameters as a flat dict, with `extra` merged in (extra keys win)."""
        data = {name: value for name, value in self if value is not None and name != "extra"}
        data.update(self.extra)
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if value is not None and value != {}:
                yield name, value

    def is_empty(self) -> bool:
        """True when no parameter is set."""
        return not self.to_dict()
