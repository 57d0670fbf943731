"""Chat records: properties and the JSON round trip."""

from __future__ import annotations

import json
from datetime import timezone

import pytest
from pydantic import ValidationError

from jib import Chat, GenerateParams, InvalidGeneratorError, Message, StoredError, Usage
from jib.errors import RateLimitError
from jib.testing import AlwaysFailGenerator, EchoGenerator

SECRET = "sk-chat-secret-42"


async def test_chat_json_round_trip_keeps_every_field_and_rebuilds_the_generator() -> None:
    generator = EchoGenerator(model="demo", prefix="> ", api_key=SECRET)
    chat = await generator.chat(["sys?", "hello"]).with_(temperature=0.3).meta(run="r").run()
    text = chat.to_json()
    assert SECRET not in text
    loaded = Chat.from_json(text)
    assert loaded.to_dict() == chat.to_dict()
    assert loaded.id == chat.id and loaded.timestamp == chat.timestamp
    assert loaded.timestamp.tzinfo is not None
    assert loaded.messages == chat.messages and loaded.generated == chat.generated
    assert loaded.usage == chat.usage and loaded.stop_reason == "stop"
    assert loaded.metadata == {"run": "r"}
    assert isinstance(loaded.generator, EchoGenerator)
    assert loaded.generator.prefix == "> "
    assert loaded.generator.params.temperature == 0.3
    assert loaded.generator.api_key is None  # the key comes from the environment, never the file
    continued = await loaded.continue_("again").run()
    assert continued.content == "> again"


async def test_failed_chat_round_trips_its_error() -> None:
    chat = (
        await AlwaysFailGenerator(model="x", error="RateLimitError")
        .chat("hi")
        .run(on_failed="include")
    )
    assert isinstance(chat.error, RateLimitError)
    loaded = Chat.from_json(chat.to_json())
    assert loaded.failed
    assert isinstance(loaded.error, StoredError)
    assert loaded.error.type_name == "RateLimitError"
    assert "injected failure" in loaded.error.message


def test_loading_rejects_bad_data_with_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        Chat.from_json('{"id": "x"}')
    with pytest.raises(ValidationError):
        Chat.from_dict({"id": "x", "timestamp": "now", "messages": []})
    with pytest.raises(ValidationError):
        Chat.from_json("not json")


def test_loading_with_an_unknown_provider_can_skip_the_generator() -> None:
    data = Chat(messages=[Message("user", "hi")]).to_dict()
    data["generator_id"] = "gone!model"
    with pytest.raises(InvalidGeneratorError, match="unknown provider 'gone'"):
        Chat.from_dict(data)
    loaded = Chat.from_dict(data, rebuild_generator=False)
    assert loaded.generator is None and loaded.generator_id == "gone!model"
    with pytest.raises(ValueError, match="no generator"):
        loaded.continue_("more")


def test_chat_properties() -> None:
    chat = Chat(
        messages=[Message("user", "q")],
        generated=[Message("assistant", "a")],
        usage=Usage(3, 4),
        params=GenerateParams(seed=1),
    )
    assert chat.last.content == "a" and chat.content == "a"
    assert chat.usage is not None and chat.usage.total_tokens == 7
    assert chat.timestamp.tzinfo is timezone.utc
    assert json.loads(chat.to_json())["params"]["seed"] == 1
    with pytest.raises(ValueError, match="no messages"):
        _ = Chat().last


def test_records_from_a_newer_jib_are_refused_clearly() -> None:
    data = Chat(messages=[Message("user", "hi")]).to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValidationError, match="schema_version 99, written by a newer jib"):
        Chat.from_dict(data)
    with pytest.raises(ValidationError, match="upgrade jib"):
        Chat.from_json(json.dumps(data))


def test_a_completion_is_not_loaded_as_a_chat_nor_the_reverse() -> None:
    from jib import Completion

    with pytest.raises(ValidationError, match="kind"):
        Chat.from_dict(Completion(text="t").to_dict())
    with pytest.raises(ValidationError, match="kind"):
        Completion.from_dict(Chat().to_dict())


def test_completion_has_the_chat_accessors() -> None:
    from jib import Completion

    completion = Completion(text="The sky is", generated=" blue")
    assert completion.last == completion.content == " blue"
    assert completion.conversation == completion.all == "The sky is blue"
    assert Completion(text="only sent").last == "only sent"
