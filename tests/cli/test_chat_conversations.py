"""`jib chat` conversations: continuing again and again, `--cid`, the prompt on stdin, arguments
in the wrong order, several generators, tags."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from jib.chat import Chat
from jib.storage import open_store
from jib.testing import EchoGenerator
from tests.cli.conftest import JibRunner, Result, assert_one_clean_error_line, jib_command


def jib_with_stdin(env: dict[str, str], cwd: Path, stdin: bytes, *args: str) -> Result:
    """Run `jib ARGS…` with `stdin` piped in, as `echo … | jib …` does."""
    done = subprocess.run(
        [*jib_command(), *args], input=stdin, capture_output=True, env=env, cwd=cwd, timeout=120
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def stored(store_path: Path) -> list[Chat]:
    with open_store(store_path) as store:
        chats = store.query(rebuild_generator=False)
    assert all(isinstance(chat, Chat) for chat in chats)
    return [chat for chat in chats if isinstance(chat, Chat)]


# -- continuing ----------------------------------------------------------------------------------


def test_continue_twice_keeps_one_conversation(jib: JibRunner, default_store: Path) -> None:
    first = jib("chat", "echo!demo", "one")
    second = jib("chat", "--continue", "two")
    third = jib("chat", "--continue", "three")

    assert [first.code, second.code, third.code] == [0, 0, 0], third.stderr
    assert third.stdout == "three\n"
    one, two, three = stored(default_store)
    assert [m.content for m in three.all] == ["one", "one", "two", "two", "three", "three"]
    assert three.metadata["continued_from"] == two.id
    assert two.metadata["continued_from"] == one.id


def test_cid_continues_any_stored_chat_by_id_prefix(jib: JibRunner, default_store: Path) -> None:
    jib("chat", "echo!demo,prefix=>", "first topic")
    jib("chat", "fixed!other,text=elsewhere", "second topic")
    first = stored(default_store)[0]

    result = jib("chat", "--cid", first.id[:8], "back to it")

    assert result.code == 0, result.stderr
    assert result.stdout == ">back to it\n"  # with the stored chat's own generator
    latest = stored(default_store)[-1]
    assert [m.content for m in latest.all] == [
        "first topic",
        ">first topic",
        "back to it",
        ">back to it",
    ]
    assert latest.metadata["continued_from"] == first.id


def test_cid_with_another_generator(jib: JibRunner, default_store: Path) -> None:
    jib("chat", "echo!demo", "hello")
    chat_id = stored(default_store)[0].id

    result = jib("chat", "--cid", chat_id, "fixed!judge,text=verdict", "judge this")

    assert result.stdout == "verdict\n"
    assert stored(default_store)[-1].generator_id == "fixed!judge,text=verdict"


def test_cid_that_matches_nothing_is_one_line(jib: JibRunner) -> None:
    jib("chat", "echo!demo", "hello")

    result = jib("chat", "--cid", "ffffffff", "again")

    assert_one_clean_error_line(result, "no stored chat or completion has the id 'ffffffff'")
    assert result.code == 1


def test_cid_of_a_completion_is_refused(jib: JibRunner, default_store: Path) -> None:
    jib("chat", "echo!demo", "make the store")
    record = asyncio.run(EchoGenerator(model="e").complete("text").run())
    with open_store(default_store) as store:
        store.save(record)

    result = jib("chat", "--cid", record.id, "again")

    assert_one_clean_error_line(result, "is a stored completion, not a chat")
    assert result.code == 2


def test_cid_and_continue_together_are_refused(jib: JibRunner) -> None:
    result = jib("chat", "--continue", "--cid", "abcd1234", "hi")

    assert_one_clean_error_line(result, "--continue takes the last conversation, --cid a given")
    assert result.code == 2


def test_system_with_cid_is_refused(jib: JibRunner) -> None:
    jib("chat", "echo!demo", "hello")

    result = jib("chat", "--cid", "abcd", "-s", "be brief", "hi")

    assert_one_clean_error_line(result, "--system cannot be used with --continue or --cid")


# -- where the prompt comes from -----------------------------------------------------------------


def test_prompt_piped_on_stdin(
    jib_env: dict[str, str], tmp_path: Path, default_store: Path
) -> None:
    result = jib_with_stdin(jib_env, tmp_path, b"hi from a pipe\n", "chat", "echo!demo")

    assert result.code == 0, result.stderr
    assert result.stdout == "hi from a pipe\n"
    assert stored(default_store)[0].messages[-1].content == "hi from a pipe"


def test_multi_line_prompt_on_stdin_keeps_its_lines(
    jib_env: dict[str, str], tmp_path: Path
) -> None:
    result = jib_with_stdin(jib_env, tmp_path, b"line one\nline two\n\n", "chat", "echo!demo")

    assert result.stdout == "line one\nline two\n"


def test_prompt_on_stdin_with_the_generator_as_an_option(
    jib_env: dict[str, str], tmp_path: Path
) -> None:
    result = jib_with_stdin(jib_env, tmp_path, b"optional", "chat", "-g", "echo!demo")

    assert result.stdout == "optional\n"


def test_a_bare_model_name_with_a_piped_prompt_is_the_identifier(
    jib_env: dict[str, str], tmp_path: Path
) -> None:
    # `echo hi | jib chat gpt-4o-mini`: with the prompt on stdin, the argument is the model.
    result = jib_with_stdin(jib_env, tmp_path, b"hi", "chat", "--json", "--no-store", "nosuch!x")

    assert_one_clean_error_line(result, "unknown provider 'nosuch'")


def test_a_prompt_argument_wins_over_stdin(jib_env: dict[str, str], tmp_path: Path) -> None:
    result = jib_with_stdin(jib_env, tmp_path, b"ignored", "chat", "echo!demo", "the argument")

    assert result.stdout == "the argument\n"


def test_with_a_generator_in_the_environment_one_argument_is_the_prompt(
    jib_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**jib_env, "JIB_GENERATOR": "echo!demo"}

    result = jib_with_stdin(env, tmp_path, b"not read", "chat", "hello")

    assert result.stdout == "hello\n"


def test_stdin_that_is_not_utf8_is_one_line(jib_env: dict[str, str], tmp_path: Path) -> None:
    result = jib_with_stdin(jib_env, tmp_path, b"caf\xe9", "chat", "echo!demo")

    assert_one_clean_error_line(result, "the prompt on stdin is not UTF-8 text")


def test_an_identifier_without_a_prompt_says_how_to_give_one(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo")  # stdin is empty

    assert_one_clean_error_line(result, "no prompt: 'echo!demo' is a generator identifier")
    assert result.code == 2


def test_no_arguments_and_nothing_piped_says_no_prompt(jib: JibRunner) -> None:
    result = jib("chat", "-g", "echo!demo")

    assert_one_clean_error_line(result, "no prompt: give one")
    assert result.code == 2


def test_prompt_and_identifier_swapped_say_what_went_wrong(
    jib: JibRunner, default_store: Path
) -> None:
    result = jib("chat", "hi", "echo!demo")

    assert_one_clean_error_line(
        result,
        "'echo!demo' looks like the generator identifier and 'hi' like the prompt: "
        "the identifier comes first (jib chat 'echo!demo' \"hi\")",
    )
    assert result.code == 2
    assert not default_store.exists()  # nothing was sent, nothing stored


def test_swapped_with_a_provider_path_is_caught_too(jib: JibRunner) -> None:
    result = jib("chat", "What is 2+2?", "openai/gpt-4o-mini")

    assert_one_clean_error_line(result, "'openai/gpt-4o-mini' looks like the generator identifier")


def test_a_prompt_that_names_an_unknown_provider_is_still_a_prompt(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo", "wow!great")

    assert result.stdout == "wow!great\n"


def test_a_first_argument_with_spaces_is_not_taken_for_an_identifier(jib: JibRunner) -> None:
    result = jib("chat", "hello there", "more")

    assert_one_clean_error_line(result, "'hello there' is not a generator identifier")
    assert result.code == 2


# -- several generators, tags --------------------------------------------------------------------


def test_several_generators_answer_the_same_prompt_each_stored(
    jib: JibRunner, default_store: Path
) -> None:
    result = jib("chat", "echo!demo", "-g", "fixed!a,text=A", "-g", "fixed!b,text=B", "same")

    assert result.code == 0, result.stderr
    assert result.stdout == "[echo!demo]\nsame\n\n[fixed!a,text=A]\nA\n\n[fixed!b,text=B]\nB\n"
    chats = stored(default_store)
    assert sorted(chat.generator_id or "" for chat in chats) == [
        "echo!demo",
        "fixed!a,text=A",
        "fixed!b,text=B",
    ]
    assert all(chat.messages[-1].content == "same" for chat in chats)


def test_several_generators_as_json_is_one_line_each(jib: JibRunner) -> None:
    result = jib("chat", "-g", "fixed!a,text=A", "-g", "fixed!b,text=B", "x", "--json")

    lines = result.stdout.splitlines()
    assert [Chat.from_json(line, rebuild_generator=False).content for line in lines] == ["A", "B"]


def test_one_failing_generator_among_several_exits_1_and_all_are_stored(
    jib: JibRunner, default_store: Path
) -> None:
    result = jib("chat", "-g", "echo!demo", "-g", "always_fail!x", "hello")

    assert result.code == 1
    assert "[echo!demo]\nhello\n" in result.stdout
    assert "error: [always_fail!x] ServerError: [test] HTTP 500: injected failure" in result.stderr
    assert result.last_error_line == "error: 1 of 2 generators failed"
    assert [chat.failed for chat in stored(default_store)].count(True) == 1


def test_several_generators_continue_the_same_conversation(
    jib: JibRunner, default_store: Path
) -> None:
    jib("chat", "echo!demo", "start")

    result = jib("chat", "--continue", "-g", "fixed!a,text=A", "-g", "fixed!b,text=B", "next")

    assert result.code == 0, result.stderr
    first, *continued = stored(default_store)
    assert len(continued) == 2
    for chat in continued:
        assert [m.content for m in chat.messages] == ["start", "start", "next"]
        assert chat.metadata["continued_from"] == first.id


def test_tags_are_stored_and_found_by_log(jib: JibRunner, default_store: Path) -> None:
    jib("chat", "echo!demo", "untagged")
    result = jib("chat", "echo!demo", "tagged", "--tag", "exp-1", "-t", "smoke")

    assert result.code == 0, result.stderr
    found = jib("log", "--tag", "exp-1", "--json").json()
    assert [record["messages"][-1]["content"] for record in found] == ["tagged"]
    assert found[0]["metadata"]["tags"] == ["exp-1", "smoke"]
    assert len(jib("log", "--tag", "smoke", "--json").json()) == 1


def test_help_says_generator_is_repeatable_and_documents_the_new_options(jib: JibRunner) -> None:
    result = jib("chat", "--help")

    text = " ".join(result.stdout.split())
    assert "repeatable: every generator answers the same prompt" in text
    for option in ("--cid", "--tag", "--continue", "stdin"):
        assert option in text
