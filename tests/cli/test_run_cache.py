"""`jib run --cache`, `jib chat --cache` and `jib cache`, as a user runs them: the real CLI in a
subprocess, against an OpenAI-protocol server on 127.0.0.1 that numbers its answers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from jib.storage import open_response_cache, open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line, jib_command
from tests.support.counting_server import chat_posts, counting_server, identifier
from tests.support.response_cache_faults import refuse_cache_writes
from tests.support.scripted_server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with counting_server() as running:
        yield running


def write_prompts(folder: Path, count: int, name: str = "prompts.txt") -> Path:
    path = folder / name
    path.write_text("".join(f"prompt {n}\n" for n in range(count)))
    return path


def notes(chats: list[Any]) -> list[dict[str, Any] | None]:
    return [chat.extra.get("response_cache") for chat in chats]


def store_for(backend: str, sqlite: Path | str, request: pytest.FixtureRequest) -> str:
    """`sqlite` (a SQLite file's path or URL) for the SQLite backend, else the PostgreSQL store
    the suite runs against."""
    return str(sqlite) if backend == "sqlite" else str(request.getfixturevalue("postgres_store"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_second_run_of_a_thousand_prompts_sends_nothing(
    jib: JibRunner,
    tmp_path: Path,
    server: ScriptedServer,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    store = store_for(backend, tmp_path / "jib.db", request)
    prompts = write_prompts(tmp_path, 1000)
    target = identifier(server)
    common = ("--cache", "--store", store, "--concurrency", "32", "--no-progress")

    first = jib("run", target, "-f", str(prompts), "--run", "first", *common)
    assert first.code == 0, first.stderr
    assert len(chat_posts(server)) == 1000
    second = jib("run", target, "-f", str(prompts), "--run", "second", *common)
    assert second.code == 0, second.stderr

    assert len(chat_posts(server)) == 1000  # not one request more
    assert "1000 hits, 0 misses" in second.stderr
    with open_store(store) as chat_store:
        before = {c.metadata["prompt_id"]: c for c in chat_store.query(run="first")}
        after = chat_store.query(run="second")
    assert len(after) == 1000
    for chat in after:
        note = chat.extra["response_cache"]
        original = before[chat.metadata["prompt_id"]]
        assert note["hit"] is True and note["chat_id"] == original.id
        assert chat.content == original.content and chat.cost_usd == 0.0
        assert chat.attempts == 0
    runs = {row["run"]: row for row in json.loads(jib("runs", "--store", store, "--json").stdout)}
    assert (runs["second"]["cache_hits"], runs["second"]["cache_misses"]) == (1000, 0)
    assert (runs["first"]["cache_hits"], runs["first"]["cache_misses"]) == (0, 1000)


def test_repeat_keeps_an_answer_per_sample(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    prompts = write_prompts(tmp_path, 5)
    args = ("run", identifier(server), "-f", str(prompts), "--repeat", "3", "--cache")
    assert jib(*args, "--run", "one").code == 0
    assert jib(*args, "--run", "two").code == 0

    assert len(chat_posts(server)) == 15
    with open_store(tmp_path / "data" / "jib" / "jib.db") as store:
        one = store.query(run="one")
        two = store.query(run="two")
    by_prompt: dict[str, set[str]] = {}
    for chat in one:
        by_prompt.setdefault(chat.metadata["prompt_id"], set()).add(chat.content)
    assert all(len(answers) == 3 for answers in by_prompt.values())  # three distinct answers
    first = {(c.metadata["prompt_id"], c.metadata["sample_index"]): c.content for c in one}
    second = {(c.metadata["prompt_id"], c.metadata["sample_index"]): c.content for c in two}
    assert first == second
    assert all(note is not None for note in notes(two))


def test_a_changed_param_or_endpoint_misses(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    prompts = write_prompts(tmp_path, 3)
    assert jib("run", identifier(server), "-f", str(prompts), "--cache").code == 0
    assert jib("run", identifier(server), "-f", str(prompts), "--cache", "-p", "seed=3").code == 0
    with counting_server() as other:
        assert jib("run", identifier(other), "-f", str(prompts), "--cache").code == 0
        assert len(chat_posts(other)) == 3
    assert len(chat_posts(server)) == 6
    # Without --cache, everything is sent.
    assert jib("run", identifier(server), "-f", str(prompts)).code == 0
    assert len(chat_posts(server)) == 9


def test_a_prompt_asked_again_in_the_same_run_is_sent_once(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    # The dataset repeats its first prompt at the end, long after the first answer came (and
    # before it is written: a run writes answers many to a transaction).
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt {n}\n" for n in [*range(300), 0]))
    result = jib("run", identifier(server), "-f", str(prompts), "--cache", "--run", "dup")
    assert result.code == 0, result.stderr
    assert len(chat_posts(server)) == 300
    assert "1 hits, 300 misses" in result.stderr
    with open_store(tmp_path / "data" / "jib" / "jib.db") as store:
        chats = store.query(run="dup")
    hits = [chat for chat in chats if chat.extra.get("response_cache")]
    (again,) = hits
    (first,) = [chat for chat in chats if chat.id == again.extra["response_cache"]["chat_id"]]
    assert first.messages[-1].content == again.messages[-1].content == "prompt 0"
    assert again.content == first.content and again.cost_usd == 0.0


def test_failures_are_never_served_from_the_cache(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("error:refused\ncut:half\nfine\n")
    for run in ("one", "two"):
        result = jib("run", identifier(server), "-f", str(prompts), "--cache", "--run", run)
        assert result.code == 1  # two failures each time
    # The failures were sent again; the good answer was not.
    texts = [body["messages"][-1]["content"] for body in chat_posts(server)]
    assert sorted(texts) == ["cut:half", "cut:half", "error:refused", "error:refused", "fine"]


def test_the_ttl_expires_answers(jib: JibRunner, tmp_path: Path, server: ScriptedServer) -> None:
    prompts = write_prompts(tmp_path, 2)
    assert jib("run", identifier(server), "-f", str(prompts), "--cache").code == 0
    # Every answer kept is older than 1 ms by now; a week-long TTL still serves them.
    assert (
        jib("run", identifier(server), "-f", str(prompts), "--cache", "--cache-ttl", "7d").code == 0
    )
    assert len(chat_posts(server)) == 2
    assert (
        jib("run", identifier(server), "-f", str(prompts), "--cache", "--cache-ttl", "0.001").code
        == 0
    )
    assert len(chat_posts(server)) == 4


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_runs_at_once_keep_one_answer_per_prompt(
    jib_env: dict[str, str],
    tmp_path: Path,
    server: ScriptedServer,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    prompts = write_prompts(tmp_path, 300)
    store = store_for(backend, f"sqlite:///{tmp_path / 'shared.db'}", request)
    command = [*jib_command(), "run", identifier(server), "-f", str(prompts), "--cache"]
    processes = [
        subprocess.Popen(
            [*command, "--run", f"run{n}", "--store", store, "--no-progress"],
            env=jib_env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(2)
    ]
    assert [process.wait(timeout=300) for process in processes] == [0, 0]

    with open_store(store) as chat_store:
        assert chat_store.count(run="run0") == chat_store.count(run="run1") == 300
    engine = create_engine(store)
    with engine.connect() as connection:
        kept = connection.execute(
            text("SELECT count(*), count(DISTINCT key) FROM jib_response_cache")
        )
        assert tuple(kept.one()) == (300, 300)
    engine.dispose()
    # Each prompt was asked once or twice (both runs may miss it at once), never more.
    assert 300 <= len(chat_posts(server)) <= 600


def test_the_cache_command_shows_and_clears(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    prompts = write_prompts(tmp_path, 4)
    target = identifier(server)
    assert jib("run", target, "-f", str(prompts), "--cache", "--run", "a").code == 0
    assert jib("run", target, "-f", str(prompts), "--cache", "--run", "b").code == 0

    (row,) = json.loads(jib("cache", "--json").stdout)
    assert (row["entries"], row["hits"], row["misses"]) == (4, 4, 4)
    assert row["generator"].startswith("openai!m,api_base=")
    shown = jib("cache")
    assert shown.code == 0 and "4 answers" in shown.stdout

    assert "deleted 0 answers" in jib("cache", "clear", "--older-than", "1d").stdout
    assert "deleted 0 answers" in jib("cache", "clear", "--run", "b").stdout
    assert "deleted 4 answers" in jib("cache", "clear", "--generator", row["generator"]).stdout
    assert jib("run", target, "-f", str(prompts), "--cache").code == 0
    assert len(chat_posts(server)) == 8
    assert "deleted 4 answers" in jib("cache", "clear").stdout
    assert "is empty" in jib("cache").stdout


def test_chat_cache_answers_a_stream_from_the_cache(jib: JibRunner, server: ScriptedServer) -> None:
    first = jib("chat", identifier(server), "hello", "--cache")
    second = jib("chat", identifier(server), "hello", "--cache")
    assert first.code == second.code == 0
    assert first.stdout == second.stdout == "hello #1\n"
    assert len(chat_posts(server)) == 1
    record = json.loads(jib("chat", identifier(server), "hello", "--cache", "--json").stdout)
    assert record["extra"]["response_cache"]["hit"] is True
    shown = jib("show", record["id"]).stdout
    origin = record["extra"]["response_cache"]["chat_id"]
    assert f"from the response cache: the answer of chat {origin}" in shown


def test_a_generator_that_cannot_be_cached_is_named(jib: JibRunner, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path, 2)
    result = jib("run", "fail!x,fail_times=0", "echo!y", "-f", str(prompts), "--cache")
    assert result.code == 0, result.stderr
    assert "note: --cache: fail!x" in result.stderr and "never cached" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--cache", "--cache-ttl", "soon"), "--cache-ttl 'soon' is not a duration"),
        (("--cache-ttl", "7d"), "--cache-ttl goes with --cache"),
        (("--cache-store", "x.db"), "--cache-store goes with --cache"),
    ],
)
def test_bad_cache_options_are_one_clear_error(
    jib: JibRunner, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    prompts = write_prompts(tmp_path, 1)
    result = jib("run", "echo!x", "-f", str(prompts), *args)
    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_a_cache_store_of_its_own(jib: JibRunner, tmp_path: Path, server: ScriptedServer) -> None:
    prompts = write_prompts(tmp_path, 2)
    cache = tmp_path / "cache.db"
    args = ("run", identifier(server), "-f", str(prompts), "--cache", "--cache-store", str(cache))
    assert jib(*args).code == 0
    assert jib(*args).code == 0
    assert len(chat_posts(server)) == 2
    assert json.loads(jib("cache", "--store", str(cache), "--json").stdout)[0]["entries"] == 2
    assert json.loads(jib("cache", "--json").stdout) == []  # the store itself holds none
    assert "deleted 2 answers" in jib("cache", "--store", str(cache), "clear").stdout


def test_an_unreachable_cache_store_is_one_clear_error(jib: JibRunner, tmp_path: Path) -> None:
    from tests.support.scripted_server import closed_port

    prompts = write_prompts(tmp_path, 1)
    url = f"postgresql://nobody:pw-secret@127.0.0.1:{closed_port()}/x"
    result = jib("run", "echo!x", "-f", str(prompts), "--cache", "--cache-store", url)
    assert_one_clean_error_line(result, "response cache")
    assert "pw-secret" not in result.stderr


def test_cache_clear_refuses_a_bad_duration(jib: JibRunner) -> None:
    result = jib("cache", "clear", "--older-than", "-3d")
    assert_one_clean_error_line(result, "--older-than '-3d' is not a duration")
    assert result.code == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_run_whose_cache_cannot_be_written_stores_its_chats_and_says_so(
    jib: JibRunner,
    tmp_path: Path,
    server: ScriptedServer,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    store = store_for(backend, f"sqlite:///{tmp_path / 'jib.db'}", request)
    prompts = write_prompts(tmp_path, 5)
    open_response_cache(store).close()  # its tables, then writes to them fail
    refuse_cache_writes(store)

    args = ("run", identifier(server), "-f", str(prompts), "--cache", "--store", store)
    result = jib(*args, "--run", "refused", "--no-progress")

    assert result.code == 0, result.stderr  # every chat ran and is stored
    assert "Traceback" not in result.stderr
    (note,) = [line for line in result.stderr.splitlines() if "stopped working" in line]
    assert note.startswith("note: the response cache stopped working")
    assert "the disk is full" in note and "the chats are stored" in note
    assert "0 hits, 5 misses" in result.stderr  # the summary, still
    assert result.stdout.startswith("Summary")
    with open_store(store) as chat_store:
        assert chat_store.count(run="refused") == 5
    # Nothing was kept, so a second run asks again (and says so again).
    again = jib(*args, "--run", "again", "--no-progress")
    assert again.code == 0 and "stopped working" in again.stderr
    assert len(chat_posts(server)) == 10


def test_cache_clear_takes_a_generator_as_given_to_jib_run(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    prompts = write_prompts(tmp_path, 3)
    assert jib("run", identifier(server), "-f", str(prompts), "--cache").code == 0
    # The options in another order, with spaces: the same generator.
    given = f"openai!m, max_retries=0, api_base={server.url}/v1"
    assert given != identifier(server)
    unreadable = jib("cache", "clear", "--generator", "openai!m,=,,")
    assert unreadable.code == 0 and "deleted 0 answers" in unreadable.stdout  # taken as given
    cleared = jib("cache", "clear", "--generator", given)
    assert cleared.code == 0 and "deleted 3 answers" in cleared.stdout
    assert json.loads(jib("cache", "--json").stdout)[0]["entries"] == 0


def test_a_cut_stream_is_counted_as_a_miss_by_jib_cache(
    jib: JibRunner, server: ScriptedServer
) -> None:
    assert jib("chat", identifier(server), "cut:story", "--cache").code != 0
    assert jib("chat", identifier(server), "a story", "--cache").code == 0
    (row,) = json.loads(jib("cache", "--json").stdout)
    assert (row["entries"], row["hits"], row["misses"]) == (1, 0, 2)


def test_a_chat_whose_cache_cannot_be_written_is_answered_and_stored(
    jib: JibRunner, tmp_path: Path, server: ScriptedServer
) -> None:
    store = f"sqlite:///{tmp_path / 'jib.db'}"
    open_response_cache(store).close()
    refuse_cache_writes(store)
    result = jib("chat", identifier(server), "hello", "--cache", "--store", store)
    assert result.code == 0, result.stderr
    assert result.stdout == "hello #1\n" and "Traceback" not in result.stderr
    assert "note: the response cache stopped working" in result.stderr
    assert "the disk is full" in result.stderr and "the chat is stored" in result.stderr
    with open_store(store) as chat_store:
        assert chat_store.count() == 1
