"""`jib chat`: one turn, printed and stored; `--continue` picks the conversation up again."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line, jib_command


def test_chat_prints_the_answer_and_stores_the_chat(jib: JibRunner, default_store: Path) -> None:
    result = jib("chat", "echo!demo", "Hello, there!")

    assert result.code == 0, result.stderr
    assert result.stdout == "Hello, there!\n"
    with open_store(default_store) as store:
        [chat] = store.query()
    assert chat.content == "Hello, there!"
    assert chat.id[:12] in result.stderr  # "stored as …"


def test_chat_with_system_message_and_params(jib: JibRunner, default_store: Path) -> None:
    result = jib("chat", "echo!demo", "one two three", "--system", "terse", "-p", "max_tokens=2")

    assert result.stdout == "one two\n"
    with open_store(default_store) as store:
        [chat] = store.query()
    assert [m.role for m in chat.messages] == ["system", "user"]
    assert chat.stop_reason == "length"


def test_chat_json_output_parses_back(jib: JibRunner) -> None:
    result = jib("chat", "fixed!demo,text=Paris", "Capital of France?", "--json")

    data = result.json()
    assert data["generated"] == [{"role": "assistant", "content": "Paris"}]
    assert data["generator_id"] == "fixed!demo,text=Paris"


def test_no_store_leaves_the_store_alone(jib: JibRunner, default_store: Path) -> None:
    result = jib("chat", "echo!demo", "hi", "--no-store")

    assert result.stdout == "hi\n"
    assert not default_store.exists()


def test_continue_resumes_the_last_conversation_with_its_generator(
    jib: JibRunner, default_store: Path
) -> None:
    jib("chat", "echo!demo,prefix=>", "first")

    result = jib("chat", "--continue", "second")

    assert result.code == 0, result.stderr
    assert result.stdout == ">second\n"
    with open_store(default_store) as store:
        last = store.last()
    assert last is not None
    assert [m.content for m in last.all] == ["first", ">first", "second", ">second"]


def test_continue_with_another_generator(jib: JibRunner, default_store: Path) -> None:
    jib("chat", "echo!demo", "first")

    result = jib("chat", "fixed!other,text=switched", "again", "--continue")

    assert result.stdout == "switched\n"


def test_continue_with_nothing_stored_is_one_line(jib: JibRunner) -> None:
    result = jib("chat", "--continue", "hello")

    assert_one_clean_error_line(result, "no stored conversation to continue")


def test_generator_from_the_environment(jib: JibRunner) -> None:
    result = jib("chat", "from env", env_update={"JIB_GENERATOR": "echo!demo"})

    assert result.stdout == "from env\n"


def test_no_generator_lists_example_identifiers(jib: JibRunner) -> None:
    result = jib("chat", "hello")

    assert result.code == 2
    assert result.stderr.startswith("error: no generator given.")
    assert "openai/gpt-4o-mini" in result.stderr


def test_failed_generation_is_one_line_and_stored_as_failed(
    jib: JibRunner, default_store: Path
) -> None:
    result = jib("chat", "always_fail!down,error=RateLimitError", "hello")

    assert_one_clean_error_line(result, "RateLimitError", "injected failure")
    assert result.code == 1
    with open_store(default_store) as store:
        assert store.count(failed=True) == 1


def test_bad_identifier_is_one_line(jib: JibRunner) -> None:
    result = jib("chat", "nosuch!model", "hello")

    assert_one_clean_error_line(result, "unknown provider 'nosuch'")
    assert result.code == 2


def test_too_many_arguments_is_one_line(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo", "hello", "world")

    assert_one_clean_error_line(result, "expected [ID] PROMPT, got 3 arguments")


def test_jib_chat_prints_the_answer_as_it_is_generated(
    jib_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.support.sse_server import FIRST, SECOND, run_stream_server

    with run_stream_server() as server:
        process = subprocess.Popen(
            [*jib_command(), "chat", f"openai!sse,api_base={server.url}", "hi"],
            env=jib_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            # The first piece arrives while the server still holds the second one back.
            assert process.stdout.read(len(FIRST)) == FIRST
            server.state.release.set()
            rest, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    assert process.returncode == 0, stderr
    assert rest == SECOND + "\n"
    assert server.state.bodies[0]["stream"] is True
    assert "stored as" in stderr


def test_jib_chat_no_stream_waits_for_the_whole_answer(jib: JibRunner) -> None:
    from tests.support.sse_server import FIRST, SECOND, run_stream_server

    with run_stream_server() as server:
        result = jib("chat", "--no-stream", f"openai!sse,api_base={server.url}", "hi")
    assert result.code == 0, result.stderr
    assert result.stdout == FIRST + SECOND + "\n"
    assert "stream" not in server.state.bodies[0]
