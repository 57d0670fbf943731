"""GenerateParams: validation, merging and flattening."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jib import GenerateParams


def test_merge_with_later_wins_and_none_is_ignored() -> None:
    base = GenerateParams(temperature=0.5, max_tokens=10, extra={"a": 1, "b": 1})
    merged = base.merge_with(
        GenerateParams(temperature=0.1, extra={"b": 2}), None, GenerateParams()
    )
    assert merged.temperature == 0.1
    assert merged.max_tokens == 10
    assert merged.extra == {"a": 1, "b": 2}
    assert base.temperature == 0.5 and base.extra == {"a": 1, "b": 1}


def test_to_dict_flattens_extra_and_drops_unset() -> None:
    params = GenerateParams(top_p=0.9, stop=["x"], extra={"logprobs": True})
    assert params.to_dict() == {"top_p": 0.9, "stop": ["x"], "logprobs": True}
    assert GenerateParams().to_dict() == {}
    assert GenerateParams().is_empty()


def test_stop_accepts_a_single_string() -> None:
    assert GenerateParams(stop="END").stop == ["END"]


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": -1}, {"max_tokens": 0}, {"top_p": 1.5}, {"stop": [""]}, {"unknown": 1}],
)
def test_invalid_params_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GenerateParams(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_only_set_fields() -> None:
    assert repr(GenerateParams(seed=3)) == "GenerateParams(seed=3)"


def test_merge_with_replaces_stop_lists_and_cannot_unset() -> None:
    base = GenerateParams(stop=["a", "b"], temperature=0.5)
    merged = base.merge_with(GenerateParams(stop=["c"]), GenerateParams(temperature=None))
    assert merged.stop == ["c"]
    assert merged.temperature == 0.5
