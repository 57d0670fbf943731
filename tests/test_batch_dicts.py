"""`BatchDicts`: a batch's record dicts, what the records share worked out once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from jib import Chat, Completion, GenerateParams, Message
from jib import chat as chat_module
from jib.chat import BatchDicts
from jib.testing import EchoGenerator


def batch() -> list[Chat | Completion]:
    generator = EchoGenerator(model="m", params=GenerateParams(temperature=0.5))
    shared = GenerateParams(max_tokens=8)
    other = EchoGenerator(model="other")
    return [
        Chat(generator=generator, params=shared, messages=[Message("user", "a")]),
        Chat(generator=generator, params=shared, messages=[Message("user", "b")]),
        Chat(generator=generator, params=GenerateParams(seed=3)),
        Chat(generator=other, params=shared, failed=True, error=ValueError("no")),
        Chat(generator=generator, params=None),
        Chat(),
        Completion(generator=generator, params=shared, text="once", generated=" upon"),
    ]


def test_the_dicts_are_the_records_own() -> None:
    records = batch()
    expected = [copy.copy(record).to_dict() for record in records]

    dicts = BatchDicts()

    assert [dicts.to_dict(record) for record in records] == expected


def test_each_generator_and_params_pair_is_written_once(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[Any, Any]] = []
    identifier_of = chat_module._identifier_of

    def counted(generator: Any, params: Any) -> str | None:
        if generator is not None:
            written.append((generator.model, params))
        return identifier_of(generator, params)

    monkeypatch.setattr(chat_module, "_identifier_of", counted)
    records = batch()
    dicts = BatchDicts()

    ids = [dicts.to_dict(record)["generator_id"] for record in records]

    assert len(written) == 4  # (m, shared) once for three records
    assert ids[:3] == ["echo!m,temperature=0.5,max_tokens=8"] * 2 + [
        "echo!m,temperature=0.5,seed=3"
    ]
    assert ids[3:] == ["echo!other,max_tokens=8", "echo!m,temperature=0.5", None, ids[0]]
    assert [record.generator_id for record in records] == ids  # kept on the record
    assert len(written) == 4


def test_a_params_object_is_dumped_once_and_shared() -> None:
    first, second = batch()[:2]
    dicts = BatchDicts()

    one, two = dicts.to_dict(first), dicts.to_dict(second)

    assert one["params"] == {"max_tokens": 8, "extra": {}}
    assert one["params"] is two["params"]
