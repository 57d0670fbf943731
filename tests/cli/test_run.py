"""`jib run`: the main job, end to end, through the real `jib` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jib.cli._runner import chunking
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line


def test_main_job_runs_offline_into_the_default_store(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!demo", "--prompts", str(prompts_file), "--run", "first")

    assert result.code == 0, result.stderr
    assert "echo!demo" in result.stdout and "Summary" in result.stdout
    assert default_store.is_file()
    # The hint names real identifiers to swap in.
    assert "jib run openai/gpt-4o-mini --prompts" in result.stderr
    assert "ollama_chat/qwen3:0.6b,api_base=http://localhost:11434" in result.stderr
    with open_store(default_store) as store:
        chats = store.query(run="first")
    prompts = prompts_file.read_text().splitlines()
    assert [c.content for c in chats] == prompts
    assert all(c.generator_id == "echo!demo" and not c.failed for c in chats)


def test_every_prompt_runs_against_every_generator(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib(
        "run", "echo!demo", "fixed!demo,text=Hi", "-g", "echo!b", "-f", str(prompts_file), "-r", "x"
    )

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        assert store.count(run="x") == 24
        assert {c.content for c in store.query(model="fixed!demo")} == {"Hi"}
        assert store.count(model="echo!b") == 8


def test_jsonl_prompts_with_messages_and_params_per_line(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    lines = [
        "just text",
        {"prompt": "one two three four", "params": {"max_tokens": 2}},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                "c",
            ]
        },
        [{"role": "user", "content": "listed"}],
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")

    result = jib("run", "echo!demo", "-f", str(path), "-r", "j", "--system", "be nice")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        chats = store.query(run="j")
    assert [c.content for c in chats] == ["just text", "one two", "c", "listed"]
    assert chats[1].stop_reason == "length"
    assert chats[1].generator_id == "echo!demo,max_tokens=2"
    assert [m.role for m in chats[2].messages] == ["system", "user", "assistant", "user"]
    assert chats[0].messages[0].content == "be nice"


def test_params_from_the_command_line_apply_to_every_prompt(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-p", "max_tokens=1", "-r", "p")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        chats = store.query(run="p")
    assert all(len(c.content.split()) == 1 for c in chats)
    assert {c.generator_id for c in chats} == {"echo!demo,max_tokens=1"}


def test_failures_are_recorded_and_the_run_goes_on(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!ok", "always_fail!down", "-f", str(prompts_file), "-r", "f")

    assert_one_clean_error_line(result, "8 of 16 chats failed", "ServerError")
    assert result.code == 1
    assert "jib log --run f --failed" in result.last_error_line
    with open_store(default_store) as store:
        assert store.count(run="f", failed=True) == 8
        assert store.count(run="f", failed=False) == 8


def test_resume_skips_what_the_run_already_stored(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    assert jib("run", "echo!demo", "-f", str(prompts_file), "-r", "r").code == 0
    # Two more prompts, one of them a duplicate of a stored one: both must run.
    with prompts_file.open("a") as handle:
        handle.write("a new prompt\nWhat does HTTP stand for?\n")

    result = jib("run", "echo!demo", "-f", str(prompts_file), "-r", "r", "--resume")

    assert result.code == 0, result.stderr
    assert "8 already stored, skipped" in result.stderr
    with open_store(default_store) as store:
        contents = [c.content for c in store.query(run="r")]
    assert len(contents) == 10
    assert contents.count("What does HTTP stand for?") == 2


def test_resume_of_a_run_with_nothing_stored_says_so_and_runs_everything(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-r", "typo", "--resume")

    assert result.code == 0, result.stderr
    assert "note: run typo has nothing stored" in result.stderr
    with open_store(default_store) as store:
        assert store.count(run="typo") == 8


def test_resume_needs_a_run_name(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "--resume")

    assert_one_clean_error_line(result, "--resume needs --run NAME")
    assert result.code == 2


def test_generator_from_the_environment(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib(
        "run", "-f", str(prompts_file), "-r", "env", env_update={"JIB_GENERATOR": "fixed!e"}
    )

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        assert store.count(run="env", model="fixed!e") == 8


def test_no_generator_lists_example_identifiers(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "-f", str(prompts_file))

    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no generator given.")
    assert "JIB_GENERATOR" in result.stderr
    for example in ("echo!demo", "openai/gpt-4o-mini", "ollama_chat/qwen3:0.6b"):
        assert example in result.stderr


def test_bad_identifier_is_one_line(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo,temperature=hot", "-f", str(prompts_file))

    assert_one_clean_error_line(result, "invalid identifier", "temperature")
    assert result.code == 2


def test_missing_prompts_file_is_one_line(jib: JibRunner) -> None:
    result = jib("run", "echo!demo", "--prompts", "nope.txt")

    assert_one_clean_error_line(result, "prompts file 'nope.txt' not found")
    assert result.code == 2


def test_missing_prompts_option_is_one_line(jib: JibRunner) -> None:
    result = jib("run", "echo!demo")

    assert_one_clean_error_line(result, "missing --prompts FILE")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("\n\n", "has no prompts"),
        ('"ok"\n{"prompt": 1\n', "p.jsonl line 2 is not valid JSON"),
        ('{"prompt": "x", "messages": []}\n', "line 1: give exactly one of 'prompt' or 'messages'"),
        ('{"prompt": "x", "params": {"temperature": "hot"}}\n', "line 1: invalid params"),
        ('[{"role": "robot", "content": "x"}]\n', "line 1: message role must be one of"),
        ("42\n", "line 1: expected a string, a list of messages"),
    ],
)
def test_malformed_prompts_file_names_the_line(
    jib: JibRunner, tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)

    result = jib("run", "echo!demo", "-f", str(path))

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_bad_param_is_one_line(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-p", "temprature=1")

    assert_one_clean_error_line(result, "'temprature' is not a generation param")
    assert jib("run", "echo!demo", "-f", str(prompts_file), "-p", "max_tokens=-1").code == 2


def test_unreachable_store_is_one_line(jib: JibRunner, prompts_file: Path) -> None:
    from tests.support.openai_server import free_port

    url = f"postgresql://jib:pw-secret@127.0.0.1:{free_port()}/jib?connect_timeout=5"

    result = jib("run", "echo!demo", "-f", str(prompts_file), "--store", url)

    assert_one_clean_error_line(result, "cannot open the store")
    assert "pw-secret" not in result.stderr + result.stdout


def test_text_progress_lines_without_a_terminal(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "--no-progress")

    assert result.code == 0
    assert "echo!demo: 8 to run" in result.stderr
    assert "echo!demo: 8/8 done, 0 failed" in result.stderr


def test_run_into_postgres(jib: JibRunner, prompts_file: Path, postgres_store: str) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-r", "pg", "--store", postgres_store)

    assert result.code == 0, result.stderr
    with open_store(postgres_store) as store:
        assert store.count(run="pg") == 8


@pytest.mark.parametrize(
    ("concurrency", "batch_size", "expected"),
    [(1, None, (1, 1)), (8, None, (2, 4)), (10, None, (3, 3)), (8, 8, (8, 1)), (4, 16, (4, 1))],
)
def test_chunks_never_put_more_than_concurrency_in_flight(
    concurrency: int, batch_size: int | None, expected: tuple[int, int]
) -> None:
    size, workers = chunking(concurrency, batch_size)

    assert (size, workers) == expected
    assert size * workers <= concurrency
