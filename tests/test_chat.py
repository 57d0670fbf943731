"""Chat records: properties and the JSON round trip."""

from __future__ import annotations

import json
import warnings
from datetime import date, datetime, timezone

import pytest
from pydantic import BaseModel, ValidationError

from jib import (
    Chat,
    Completion,
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    ContentText,
    FunctionCall,
    GenerateParams,
    InvalidGeneratorError,
    Message,
    StoredError,
    ToolCall,
    Usage,
)
from jib.chat import UnreadableRecordWarning, UnwritableRecordError
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


# -- the JSON form of parts, tool calls and structured output ---------------------------------

MOMENT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def text_only_chat() -> Chat:
    return Chat(
        messages=[Message("system", "Be brief."), Message("user", "Hi é")],
        generated=[Message("assistant", "Hi")],
        generator=EchoGenerator(model="demo"),
        params=GenerateParams(temperature=0.5),
        stop_reason="stop",
        usage=Usage(3, 1),
        metadata={"run": "r", "tags": ["a"]},
        extra={"k": 1},
        attempts=1,
        latency_ms=2.5,
        cost_usd=0.001,
        id="0" * 32,
        timestamp=MOMENT,
    )


def test_a_text_only_record_is_written_as_the_first_record_format_wrote_it() -> None:
    # Written by jib before issue 18, character for character.
    before = (
        '{"schema_version":1,"id":"00000000000000000000000000000000",'
        '"timestamp":"2024-05-01T12:00:00Z","generator_id":"echo!demo,temperature=0.5",'
        '"params":{"temperature":0.5,"max_tokens":null,"top_p":null,"top_k":null,"stop":null,'
        '"seed":null,"presence_penalty":null,"frequency_penalty":null,"timeout":null,'
        '"extra":{}},"stop_reason":"stop","usage":{"input_tokens":3,"output_tokens":1,'
        '"total_tokens":4},"failed":false,"error":null,"metadata":{"run":"r","tags":["a"]},'
        '"extra":{"k":1},"attempts":1,"latency_ms":2.5,"cost_usd":0.001,"kind":"chat",'
        '"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi é"}],'
        '"generated":[{"role":"assistant","content":"Hi"}]}'
    )
    completion = Completion(
        text="The sky is", generated=" blue", usage=Usage(2, 1), id="2" * 32, timestamp=MOMENT
    )

    assert text_only_chat().to_json() == before
    assert Chat.from_json(before).to_json() == before
    assert completion.to_json() == (
        '{"schema_version":1,"id":"22222222222222222222222222222222",'
        '"timestamp":"2024-05-01T12:00:00Z","generator_id":null,"params":null,'
        '"stop_reason":"unknown","usage":{"input_tokens":2,"output_tokens":1,"total_tokens":3},'
        '"failed":false,"error":null,"metadata":{},"extra":{},"attempts":null,"latency_ms":null,'
        '"cost_usd":null,"kind":"completion","text":"The sky is","generated":" blue"}'
    )
    assert "output" not in text_only_chat().to_dict()


def chat_with_everything() -> Chat:
    call = ToolCall("call_1", FunctionCall("get_weather", '{"city": "Paris"}'))
    return Chat(
        messages=[
            Message("system", "You see.", cache_control={"type": "ephemeral"}),
            Message(
                "user",
                [
                    ContentText("What is in these?", cache_control={"type": "ephemeral"}),
                    ContentImageUrl.from_bytes(PNG, "image/png", detail="high"),
                    ContentImageUrl.from_url("https://example.com/cat.png"),
                    ContentAudioInput.from_bytes(b"RIFF" + bytes(64), "wav"),
                    ContentFile.from_bytes(b"%PDF-1.7 ...", "application/pdf", filename="a.pdf"),
                ],
            ),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '{"temp": 21}', tool_call_id="call_1"),
        ],
        generated=[Message("assistant", '{"answer": "a cat"}')],
        params=GenerateParams(
            tools=[{"type": "function", "function": {"name": "get_weather"}}],
            tool_choice="auto",
            response_format={"type": "json_object"},
        ),
        usage=Usage(10, 5, cached_input_tokens=4, cache_write_tokens=2, reasoning_tokens=3),
        extra={"refusal": None, "provider": {"refusal": "no"}},
        output={"answer": "a cat"},
    )


def test_parts_tool_calls_cache_marks_counts_and_output_round_trip_through_json() -> None:
    chat = chat_with_everything()

    text = chat.to_json()
    loaded = Chat.from_json(text)

    assert json.loads(text)["schema_version"] == 2
    assert loaded.messages == chat.messages and loaded.generated == chat.generated
    assert loaded.messages[1].content_parts == chat.messages[1].content_parts
    assert loaded.messages[2].tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert loaded.messages[3].tool_call_id == "call_1"
    assert loaded.usage == chat.usage and loaded.extra == chat.extra
    assert loaded.params is not None and loaded.params.tools == chat.params.tools  # type: ignore[union-attr]
    assert loaded.params.response_format == {"type": "json_object"}
    assert loaded.output == {"answer": "a cat"}
    assert loaded.to_json() == text
    assert Chat.from_dict(chat.to_dict()).to_dict() == chat.to_dict()


def test_a_string_stays_a_string_beside_parts() -> None:
    chat = Chat(messages=[Message("user", "plain"), Message("user", ["as parts"])])

    messages = json.loads(chat.to_json())["messages"]

    assert messages[0]["content"] == "plain"
    assert messages[1]["content"] == [{"type": "text", "text": "as parts"}]
    loaded = Chat.from_json(chat.to_json())
    assert not loaded.messages[0].has_parts and loaded.messages[1].has_parts


class City(BaseModel):
    name: str
    founded: date


def test_a_pydantic_output_is_kept_as_its_json_and_loads_as_plain_json() -> None:
    rome = City(name="Rome", founded=date(1, 1, 1))
    chat = Chat(messages=[Message("user", "A city?")], output=rome)

    loaded = Chat.from_json(chat.to_json())

    assert chat.to_dict()["output"] == {"name": "Rome", "founded": "0001-01-01"}
    assert loaded.output == {"name": "Rome", "founded": "0001-01-01"}
    assert City.model_validate(loaded.output) == chat.output


def test_an_output_without_a_json_form_is_a_clear_error() -> None:
    chat = Chat(output=object())

    with pytest.raises(UnwritableRecordError, match=r"output \(a object\) has no JSON form"):
        chat.to_dict()
    with pytest.raises(UnwritableRecordError):
        chat.to_json()


def test_a_record_with_a_broken_part_is_unreadable_and_the_reason_quotes_nothing() -> None:
    good = chat_with_everything().to_dict()
    unknown = json.loads(json.dumps(good))
    unknown["messages"][1]["content"][1] = {"type": "secret-kind", "x": "secret-value"}
    broken = json.loads(json.dumps(good))
    broken["messages"][1]["content"][1]["image_url"]["url"] = "data:image/png;base64,secret!!"
    not_parts = json.loads(json.dumps(good))
    not_parts["messages"][0]["content"] = {"secret": 1}
    bad_call = json.loads(json.dumps(good))
    bad_call["messages"][2]["tool_calls"] = [{"id": "secret-id"}]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Chat.from_dicts([unknown, broken, good, not_parts, bad_call])

    reasons = [w.message.reason for w in caught if isinstance(w.message, UnreadableRecordWarning)]
    assert len(loaded) == 1
    assert reasons == [
        "messages.1.content.parts.1: Value error, a content part's type must be text, "
        "image_url, input_audio or file",
        "messages.1.content.parts.1: Value error, this image_url part lacks a field, or its "
        "URL or data is not valid",
        "messages.0.content: should be text or a list of content parts",
        "messages.2.tool_calls.0: Value error, a tool call needs an object with function.name",
    ]
    assert not any("secret" in reason for reason in reasons)
    with pytest.raises(ValidationError, match="this image_url part lacks a field"):
        Chat.from_dict(broken)


def test_equal_parts_of_a_batch_load_as_one_part() -> None:
    data = chat_with_everything().to_dict()
    lines = "\n".join(json.dumps({**data, "id": str(n)}) for n in range(3))

    chats = Chat.from_jsonl(lines)

    images = [chat.messages[1].content_parts[1] for chat in chats]
    assert images[0] == chat_with_everything().messages[1].content_parts[1]
    assert images[0] is images[1] is images[2]


def test_a_completion_keeps_the_cache_and_reasoning_counts() -> None:
    completion = Completion(text="a", generated="b", usage=Usage(5, 2, cached_input_tokens=3))

    loaded = Completion.from_json(completion.to_json())

    assert loaded.usage == Usage(5, 2, cached_input_tokens=3)
    assert json.loads(completion.to_json())["schema_version"] == 2


def test_a_part_that_refers_to_a_stores_data_says_where_to_load_it() -> None:
    data = Chat(messages=[Message("user", "x")]).to_dict()
    reference = "jib-blob:image/png," + "0" * 64
    data["messages"][0]["content"] = [{"type": "image_url", "image_url": {"url": reference}}]

    with pytest.raises(ValidationError, match="refers to data kept in a store: load it from"):
        Chat.from_dict(data)
