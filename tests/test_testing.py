"""jib.testing's generators for content beyond text: `ScriptedGenerator` (answers from a script of
messages), `echo!` naming the parts it got, `CallbackGenerator` answering with tool calls."""

from __future__ import annotations

import pytest

import jib
from jib import (
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    FunctionCall,
    GenerateParams,
    Message,
    ToolCall,
)
from jib.testing import CallbackGenerator, EchoGenerator, ScriptedGenerator, ScriptExhaustedError

CALL = ToolCall("c1", FunctionCall("add", '{"a": 1, "b": 2}'))


async def test_a_scripted_generator_answers_each_turn_with_the_next_entry() -> None:
    model = ScriptedGenerator(model="s", script=["first", [CALL], {"content": "third"}])

    first = await model.chat("go").run()
    second = await first.continue_("again")
    third = await second.continue_("more")

    assert [first.content, third.content] == ["first", "third"]
    assert second.last == Message("assistant", "", tool_calls=[CALL])
    assert second.stop_reason == "tool_calls" and first.stop_reason == "stop"
    assert [len(conversation) for conversation, _ in model.received] == [1, 3, 5]


async def test_every_chat_of_a_batch_follows_the_script_from_its_start() -> None:
    model = ScriptedGenerator(model="s", script=["same"])
    chats = await model.chat().run_batch(["a", "b", "c"])
    assert [chat.content for chat in chats] == ["same"] * 3
    assert model.batch_sizes == [3]


async def test_a_script_entry_may_hold_parts_and_usage_counts_words() -> None:
    image = ContentImageUrl.from_url("https://example.com/cat.png")
    model = ScriptedGenerator(model="s", script=[Message("assistant", ["Here:", image])])
    chat = await model.chat("one two three").run()
    assert chat.last.content_parts[1] == image
    assert chat.usage == jib.Usage(3, 3)  # "Here:" and the image's label: "[image_url", "…]"


async def test_running_past_the_script_fails_the_item_clearly() -> None:
    model = ScriptedGenerator(model="demo", script=["only"])
    chats = await model.chat().run_batch(
        [["hi"], [Message("user", "a"), Message("assistant", "b"), Message("user", "c")]],
        on_failed="include",
    )
    assert chats[0].content == "only"
    assert isinstance(chats[1].error, ScriptExhaustedError)
    assert str(chats[1].error) == (
        "the script of 'demo' has 1 answer(s); this conversation asks for answer 2"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"role": "wizard"}, "script entry 1: message role must be one of"),
        ({"content": 3}, "script entry 1: message content must be a string or a list of parts"),
        (
            42,
            "script entry 1: an entry is text, a Message, a message dict or a list of ToolCalls, "
            "not int",
        ),
    ],
)
def test_a_bad_script_entry_is_refused_when_built(entry: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScriptedGenerator(model="s", script=["fine", entry])


def test_a_script_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="script must be a list of entries"):
        ScriptedGenerator(model="s", script="just text")


def test_a_scripted_generator_round_trips_through_its_identifier() -> None:
    model = ScriptedGenerator(model="demo", script=["Hi, there", [CALL]])
    identifier = model.to_identifier()
    assert identifier.startswith("scripted!demo,script=")
    rebuilt = jib.get_generator(identifier)
    assert isinstance(rebuilt, ScriptedGenerator) and rebuilt.script == model.script
    plain = jib.get_generator('scripted!demo,script=["Hi"]')
    assert plain.script == ["Hi"]  # type: ignore[attr-defined]


async def test_a_scripted_answer_streams_word_by_word() -> None:
    model = ScriptedGenerator(model="s", script=["Hello  there, world "])
    stream = model.chat("x").stream()
    assert [delta async for delta in stream] == ["Hello", "  there,", " world", " "]
    assert stream.chat.content == "Hello  there, world "


async def test_a_scripted_generator_takes_wrappers_like_the_others() -> None:
    seen: list[str] = []

    def wrapper(call):  # type: ignore[no-untyped-def]
        async def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append("called")
            return await call(*args, **kwargs)

        return wrapped

    model = ScriptedGenerator(model="s", script=["ok"])
    await model.chat("x").wrap(wrapper).run()
    assert seen == ["called"] and model.calls == 1


# -- echo! names the parts it got ------------------------------------------------------------


async def test_echo_names_each_part_after_the_text() -> None:
    image = ContentImageUrl.from_bytes(bytes(12 * 1024), "image/png")
    audio = ContentAudioInput.from_bytes(bytes(3000), "wav")
    pdf = ContentFile.from_bytes(bytes(2 * 1024 * 1024 + 100_000), "application/pdf")
    remote = ContentImageUrl.from_url("https://example.com/cat.png")
    tiny = ContentFile.from_bytes(b"%PDF", "application/pdf")
    generator = jib.get_generator("echo!demo")

    chat = await generator.chat(Message("user", ["What are these?", image, audio, pdf])).run()
    assert chat.content == (
        "What are these? [image/png 12 KB] [audio/wav 3 KB] [application/pdf 2.1 MB]"
    )
    only_parts = await generator.chat(Message("user", [remote, tiny])).run()
    assert only_parts.content == "[image https://example.com/cat.png] [application/pdf 4 B]"


async def test_echo_of_plain_text_is_unchanged() -> None:
    chat = await EchoGenerator(model="e").chat("plain words").run()
    assert chat.content == "plain words"


# -- CallbackGenerator answers with messages too ------------------------------------------------


async def test_a_callback_may_answer_with_a_message_holding_tool_calls() -> None:
    def answer(messages: list[Message], params: GenerateParams) -> Message:
        return Message("assistant", "", tool_calls=[CALL])

    chat = await CallbackGenerator(model="cb", callback=answer).chat("x").run()
    assert chat.last.tool_calls == (CALL,) and chat.stop_reason == "tool_calls"


async def test_a_callback_returning_something_else_says_what_it_may_return() -> None:
    generator = CallbackGenerator(model="cb", callback=lambda messages, params: 3)
    chat = await generator.chat("x").catch(TypeError).run(on_failed="include")
    assert isinstance(chat.error, TypeError)
    assert "a string, a Message, a GeneratedText or a GeneratedMessage, not int" in str(chat.error)
