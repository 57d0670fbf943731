"""`jib run --batch-api` and `jib batches`, against a server on 127.0.0.1 speaking OpenAI's and
Anthropic's batch APIs (results shuffled, items failing once, a batch expiring half run)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line, jib_command
from tests.support.batch_api_server import RunningBatchServer, run_batch_api_server

FAST = ["--batch-api-poll", "0.01", "--no-progress"]


@pytest.fixture
def batch_server() -> Iterator[RunningBatchServer]:
    with run_batch_api_server() as server:
        server.state.key = "sk-test"
        yield server


def identifier(server: RunningBatchServer, provider: str) -> str:
    if provider == "openai":
        return f"openai!gpt-4o-mini,api_base={server.url}/v1,api_key=sk-test"
    return f"anthropic/claude-sonnet-4-5,api_base={server.url},api_key=sk-test"


def journal_rows(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            row = connection.execute("SELECT count(*) FROM jib_provider_batches").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_batch_api_run_stores_every_chat_joined_to_its_prompt_at_the_batch_price(
    jib: JibRunner, tmp_path: Path, default_store: Path, batch_server: RunningBatchServer,
    provider: str,
) -> None:  # fmt: skip
    prompts = [f"prompt number {i}" for i in range(1000)]
    (tmp_path / "many.txt").write_text("".join(p + "\n" for p in prompts))
    state = batch_server.state
    state.fail_once = {prompts[5], prompts[999]}
    state.expire = {2}
    model = "gpt-4o-mini" if provider == "openai" else "anthropic/claude-sonnet-4-5"
    result = jib(
        "run", identifier(batch_server, provider), "-f", "many.txt", "-r", "cheap",
        "--batch-api", "--batch-api-max-requests", "150", "--batch-api-max-bytes", "15000",
        "--price", f"{model}=2,4", *FAST,
    )  # fmt: skip

    assert result.code == 0, result.stderr
    created = state.created(provider)
    assert f"batch API: {len(created)} batch(es) submitted" in result.stderr
    assert all(len(b.requests) <= 150 and b.size <= 15000 for b in created)
    with open_store(default_store) as store:
        chats = store.query(run="cheap")
    assert len(chats) == 1000
    by_prompt = {chat.metadata["prompt_id"]: chat for chat in chats}
    for number, prompt in enumerate(prompts, start=1):
        chat = by_prompt[str(number)]
        assert chat.messages[-1].content == prompt
        assert chat.content == prompt
        assert chat.usage is not None
        full = (chat.usage.input_tokens * 2 + chat.usage.output_tokens * 4) / 1e6
        assert chat.cost_usd == pytest.approx(full / 2)
        assert chat.extra["batch_api"]["provider"] == provider
    assert by_prompt["6"].attempts == 2  # failed once inside its batch, retried alone

    listed = jib("batches")
    assert listed.code == 0 and "No provider batches in flight" in listed.stdout
    every = jib("batches", "--all", "--json").json()
    assert sorted(b["batch_id"] for b in every) == sorted(b.id for b in created)
    assert all(b["collected"] and b["provider"] == provider for b in every)
    for path in default_store.parent.glob("jib.db*"):  # the database and its journal files
        assert b"sk-test" not in path.read_bytes()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_while_polling_then_resume_submits_nothing_again_and_stores_each_chat_once(
    jib: JibRunner, jib_env: dict[str, str], tmp_path: Path, default_store: Path,
    batch_server: RunningBatchServer, backend: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    total = 1000
    (tmp_path / "many.txt").write_text("".join(f"prompt {i}\n" for i in range(total)))
    state = batch_server.state
    state.gate.clear()  # every batch stays in progress until the test lets it end
    args = ["run", identifier(batch_server, "openai"), "-f", "many.txt", "-r", "crash",
            "--batch-api", "--batch-api-max-requests", "150", *FAST]  # fmt: skip
    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_store"))
        args += ["--store", url]
    else:
        url = str(default_store)
    process = subprocess.Popen(
        [*jib_command(), *args],
        env=jib_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(state.created()) < 7 or state.poll_count < 30:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run did not submit its batches"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    submitted = [b.id for b in state.created()]
    assert len(submitted) == 7

    store_args = ["--store", url] if backend == "postgresql" else []
    in_flight = jib("batches", "--run", "crash", "--json", *store_args).json()
    assert sorted(b["batch_id"] for b in in_flight) == sorted(submitted)
    assert {b["status"] for b in in_flight} == {"in_progress"}
    assert sum(b["requests"] for b in in_flight) == total

    state.gate.set()
    key = {"OPENAI_API_KEY": "sk-test"}  # the stored identifier holds none
    refreshed = jib("batches", "--refresh", "--json", *store_args, env_update=key).json()
    assert {b["status"] for b in refreshed} == {"completed"}
    resumed = jib(*args, "--resume")

    assert resumed.code == 0, resumed.stderr
    assert "batch API: 0 batch(es) submitted, 7 resumed" in resumed.stderr
    assert [b.id for b in state.created()] == submitted  # nothing submitted twice
    with open_store(url) as store:
        stored = list(store.iter_dicts(run="crash"))
    assert len(stored) == total
    assert sorted(d["messages"][-1]["content"] for d in stored) == sorted(
        f"prompt {i}" for i in range(total)
    )
    assert jib("batches", *store_args).stdout.startswith("No provider batches in flight")


def test_jib_batches_cancels_a_batch_and_resume_runs_what_it_did_not_answer(
    jib: JibRunner, jib_env: dict[str, str], tmp_path: Path, default_store: Path,
    batch_server: RunningBatchServer,
) -> None:  # fmt: skip
    (tmp_path / "few.txt").write_text("".join(f"q{i}\n" for i in range(10)))
    state = batch_server.state
    state.gate.clear()
    args = ["run", identifier(batch_server, "anthropic"), "-f", "few.txt", "-r", "c",
            "--batch-api", *FAST]  # fmt: skip
    process = subprocess.Popen(
        [*jib_command(), *args],
        env=jib_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while journal_rows(default_store) < 1:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    (batch,) = state.created()

    # The stored identifier holds no key: the provider's variable gives it, as on any reload.
    cancelled = jib("batches", "--cancel", batch.id, env_update={"ANTHROPIC_API_KEY": "sk-test"})
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{batch.id}: ended"  # Anthropic's word once canceled
    assert state.batches[batch.id].errors  # every request canceled, none answered
    missing = jib("batches", "--cancel", "msgbatch_nope")
    assert_one_clean_error_line(missing, "no batch 'msgbatch_nope' is stored")

    state.gate.set()
    resumed = jib(*args, "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "batch API: 1 batch(es) submitted, 1 resumed" in resumed.stderr
    with open_store(default_store) as store:
        assert sorted(c.content for c in store.query(run="c")) == sorted(f"q{i}" for i in range(10))


def test_a_generator_without_a_batch_api_is_refused_before_anything_runs(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "--batch-api")

    assert_one_clean_error_line(result, "echo!demo has no batch API jib speaks")
    assert result.code == 2
    assert not default_store.exists() or journal_rows(default_store) == 0


def test_batch_api_options_are_checked(jib: JibRunner, prompts_file: Path) -> None:
    with_cost = jib("run", "echo!demo", "-f", str(prompts_file), "--batch-api", "--max-cost", "1")
    assert_one_clean_error_line(with_cost, "--max-cost cannot stop a --batch-api run")
    alone = jib("run", "echo!demo", "-f", str(prompts_file), "--batch-api-fallback")
    assert_one_clean_error_line(alone, "go with --batch-api")


def test_batches_json_lists_nothing_in_an_empty_store(jib: JibRunner) -> None:
    result = jib("batches", "--json")
    assert result.code == 0
    assert json.loads(result.stdout) == []


def test_kill_9_with_a_retry_batch_in_flight_resumes_both_batches_without_submitting(
    jib: JibRunner, jib_env: dict[str, str], tmp_path: Path, default_store: Path,
    batch_server: RunningBatchServer,
) -> None:  # fmt: skip
    (tmp_path / "few.txt").write_text("".join(f"q{i}\n" for i in range(20)))
    state = batch_server.state
    state.fail_once = {"q3", "q4"}
    state.gate.clear()
    state.hold = {2}  # the first batch ends; the retry of its two failures stays in progress
    args = ["run", identifier(batch_server, "openai"), "-f", "few.txt", "-r", "r",
            "--batch-api", *FAST]  # fmt: skip
    process = subprocess.Popen(
        [*jib_command(), *args],
        env=jib_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while journal_rows(default_store) < 2 or state.batches["batch_0002"].polls < 3:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    retry = state.batches["batch_0002"]
    assert sorted(body["messages"][-1]["content"] for _, body in retry.requests) == ["q3", "q4"]

    state.gate.set()
    resumed = jib(*args, "--resume")

    assert resumed.code == 0, resumed.stderr
    assert "batch API: 0 batch(es) submitted" in resumed.stderr
    assert len(state.created()) == 2
    with open_store(default_store) as store:
        chats = store.query(run="r")
    assert sorted(c.content for c in chats) == sorted(f"q{i}" for i in range(20))
    assert {c.content: c.attempts for c in chats}["q3"] == 2


def test_repeat_samples_go_in_the_batch_as_requests_of_their_own(
    jib: JibRunner, tmp_path: Path, default_store: Path, batch_server: RunningBatchServer
) -> None:
    (tmp_path / "few.txt").write_text("one\ntwo\n")
    result = jib(
        "run", identifier(batch_server, "openai"), "-f", "few.txt", "-r", "rep",
        "--repeat", "3", "--batch-api", *FAST,
    )  # fmt: skip

    assert result.code == 0, result.stderr
    (batch,) = batch_server.state.created()
    assert len({custom_id for custom_id, _ in batch.requests}) == 6
    with open_store(default_store) as store:
        chats = store.query(run="rep")
    samples = sorted((c.metadata["prompt_id"], c.metadata["sample_index"]) for c in chats)
    assert samples == [(p, s) for p in ("1", "2") for s in range(3)]


def test_jib_batches_will_not_send_a_key_to_a_host_the_store_names(
    jib: JibRunner, default_store: Path
) -> None:
    from jib.batch_api import JournalEntry
    from jib.storage import ProviderBatchJournal

    default_store.parent.mkdir(parents=True)
    with open_store(default_store) as store:
        ProviderBatchJournal(store).submitted(
            JournalEntry(
                key="k1",
                run="r",
                generator_id="openai!gpt-4o-mini,api_base=http://evil.example/v1",
                provider="openai",
                endpoint="http://evil.example/v1",
                batch_id="batch_x",
                input_file_id="file-x",
                custom_ids=["a"],
            )
        )
    listed = jib("batches", "--json").json()
    assert [b["batch_id"] for b in listed] == ["batch_x"]

    result = jib("batches", "--cancel", "batch_x", env_update={"OPENAI_API_KEY": "sk-mine"})

    assert_one_clean_error_line(result, "evil.example", "--allow-host evil.example")
    assert "sk-mine" not in result.stderr


def test_a_prompt_edited_after_a_crash_is_sent_again_not_joined_to_its_old_answer(
    jib: JibRunner, jib_env: dict[str, str], tmp_path: Path, default_store: Path,
    batch_server: RunningBatchServer,
) -> None:  # fmt: skip
    dataset = tmp_path / "few.txt"
    dataset.write_text("alpha\nbeta\n")
    state = batch_server.state
    state.gate.clear()
    args = ["run", identifier(batch_server, "openai"), "-f", "few.txt", "-r", "e",
            "--batch-api", *FAST]  # fmt: skip
    process = subprocess.Popen(
        [*jib_command(), *args],
        env=jib_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while journal_rows(default_store) < 1:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    dataset.write_text("alpha\nbeta, edited\n")
    state.gate.set()
    resumed = jib(*args, "--resume")

    assert resumed.code == 0, resumed.stderr
    assert "batch API: 1 batch(es) submitted, 1 resumed" in resumed.stderr
    with open_store(default_store) as store:
        assert sorted(c.content for c in store.query(run="e")) == ["alpha", "beta, edited"]


def test_a_wrong_key_stops_the_run_with_one_line_that_does_not_show_it(
    jib: JibRunner, prompts_file: Path, batch_server: RunningBatchServer
) -> None:
    wrong = f"openai!gpt-4o-mini,api_base={batch_server.url}/v1,api_key=sk-wrong-one"
    result = jib("run", wrong, "-f", str(prompts_file), "--batch-api", *FAST)

    assert_one_clean_error_line(result, "HTTP 401", "Incorrect API key provided")
    assert result.code == 1
    assert "sk-wrong-one" not in result.stderr + result.stdout
    assert batch_server.state.created() == []


def test_a_prompt_too_large_for_any_batch_is_stored_failed_and_every_other_chat_is_stored(
    jib: JibRunner, tmp_path: Path, default_store: Path, batch_server: RunningBatchServer
) -> None:
    huge = "x" * 1000
    prompts = ["one", "two", huge, "four", "five"]
    (tmp_path / "mixed.txt").write_text("".join(p + "\n" for p in prompts))
    state = batch_server.state
    state.refuse_larger = 500
    result = jib(
        "run", identifier(batch_server, "anthropic"), "-f", "mixed.txt", "-r", "big",
        "--batch-api", "--batch-api-max-bytes", "800", *FAST,
    )  # fmt: skip

    assert result.code == 1  # some chats failed; the run went on
    assert "1 of 5 chats failed" in result.stderr
    assert state.refused == [1]
    with open_store(default_store) as store:
        chats = {c.metadata["prompt_id"]: c for c in store.query(run="big")}
    assert sorted(chats) == ["1", "2", "3", "4", "5"]
    assert chats["3"].failed and chats["3"].messages[-1].content == huge
    assert chats["3"].error is not None
    assert "a request in this batch is larger than 500 bytes" in str(chats["3"].error)
    assert [chats[n].content for n in ("1", "2", "4", "5")] == ["one", "two", "four", "five"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_made_whose_answer_was_lost_is_adopted_journaled_and_each_chat_stored_once(
    jib: JibRunner, tmp_path: Path, default_store: Path, batch_server: RunningBatchServer,
    backend: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    (tmp_path / "few.txt").write_text("".join(f"q{i}\n" for i in range(20)))
    state = batch_server.state
    # The first batch is made, then the connection closes; the second is made, then a 500.
    state.lose_answers = {"POST /v1/batches": [0, 500]}
    store_args = []
    if backend == "postgresql":
        store_args = ["--store", str(request.getfixturevalue("postgres_store"))]
    result = jib(
        "run", identifier(batch_server, "openai"), "-f", "few.txt", "-r", "lost",
        "--batch-api", "--batch-api-max-requests", "10", *FAST, *store_args,
    )  # fmt: skip

    assert result.code == 0, result.stderr
    assert state.lose_answers == {"POST /v1/batches": []}
    created = state.created()
    assert [b.id for b in created] == ["batch_0001", "batch_0002"]  # each made once
    assert "batch API: 2 batch(es) submitted" in result.stderr
    journal = jib("batches", "--all", "--json", *store_args).json()
    assert sorted((b["batch_id"], b["input_file_id"], b["requests"]) for b in journal) == sorted(
        (b.id, b.input_file_id, len(b.requests)) for b in created
    )
    assert all(b["collected"] and b["run"] == "lost" for b in journal)
    url = store_args[1] if store_args else str(default_store)
    with open_store(url) as store:
        stored = list(store.iter_dicts(run="lost"))
    assert sorted(d["messages"][-1]["content"] for d in stored) == sorted(
        f"q{i}" for i in range(20)
    )
    assert all(state.seen[f"q{i}"] == 1 for i in range(20))
