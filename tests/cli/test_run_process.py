"""`jib run` as a process: killed mid-run, resumed, and watched in a real terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from jib.storage import open_store
from tests.cli.answer_server import last_user_text
from tests.cli.conftest import JibRunner, Result, assert_one_clean_error_line, jib_command
from tests.support.scripted_server import Answer, ReceivedRequest, http_answer, serve_script


@contextmanager
def gated_echo_server(free: int) -> Iterator[tuple[str, threading.Event]]:
    """An OpenAI-protocol server that answers each prompt with itself: the first `free` requests
    at once, every later one only once the returned gate is set. So a run cannot finish before
    the test has done to it what it means to (kill it, break its store), however fast it is.
    Yields an `openai!` identifier for it and the gate."""
    gate = threading.Event()
    served = 0
    lock = threading.Lock()

    def script(request: ReceivedRequest, answer: Answer) -> None:
        nonlocal served
        with lock:
            served += 1
            held = served > free
        while held and not gate.wait(0.05):
            if stopping.is_set():
                return
        message = {"role": "assistant", "content": last_user_text(request.json())}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        answer.write(http_answer(200, {"id": "x", "object": "chat.completion",
                                       "choices": [choice], "usage": usage}))  # fmt: skip

    stopping = threading.Event()
    with serve_script(script) as server:
        try:
            yield f"openai!echo,api_base={server.url}/v1,max_retries=0", gate
        finally:
            stopping.set()


def stored_rows(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM jib_records").fetchone()[0])
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0


def postgres_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM jib_records")).scalar_one())
    except SQLAlchemyError:  # the tables are not created yet
        return 0
    finally:
        engine.dispose()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Context managers that close when the test ends."""
    with ExitStack() as exits:
        yield exits


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_run_leaves_whole_chats_and_resume_finishes_without_duplicates(
    jib: JibRunner,
    jib_env: dict[str, str],
    tmp_path: Path,
    default_store: Path,
    backend: str,
    request: pytest.FixtureRequest,
    stack: ExitStack,
) -> None:
    total = 20_000
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(total)))
    identifier, gate = stack.enter_context(gated_echo_server(free=400))
    # Chunks of 4: each chunk is stored whole or not at all.
    args = ["run", identifier, "-f", str(prompts), "-r", "crash"]
    pace = ["-c", "4", "--batch-size", "4"]
    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_store"))
        args += ["--store", url]
    else:
        url = str(default_store)

    def stored() -> int:
        return postgres_rows(url) if backend == "postgresql" else stored_rows(default_store)

    process = subprocess.Popen(
        [*jib_command(), *args, *pace, "--no-progress"],
        env=jib_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while stored() < 200 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    with open_store(url) as store:
        survivors = store.query(run="crash")
    assert 200 <= len(survivors) < total
    assert len(survivors) % 4 == 0  # no half-stored chunk
    for chat in survivors:  # every stored row is a whole chat
        assert not chat.failed
        assert chat.content == chat.messages[-1].content
        assert chat.usage is not None and chat.usage.total_tokens > 0

    gate.set()
    # The rest at a run's usual pace (the chunk size is no part of what a chat is).
    result = jib(*args, "-c", "16", "--resume", "--no-progress")

    assert result.code == 0, result.stderr
    assert f"{len(survivors)} already stored, skipped" in result.stderr
    with open_store(url) as store:
        contents = [d["messages"][-1]["content"] for d in store.iter_dicts(run="crash")]
    assert len(contents) == total
    assert set(contents) == {f"prompt number {i}" for i in range(total)}


def test_a_store_failing_mid_run_stops_it_with_one_line_and_resume_finishes(
    jib: JibRunner,
    jib_env: dict[str, str],
    tmp_path: Path,
    postgres_store: str,
    stack: ExitStack,
) -> None:
    total = 1000
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(total)))
    identifier, gate = stack.enter_context(gated_echo_server(free=40))
    args = ["run", identifier, "-f", str(prompts), "-r", "broken", "--store", postgres_store]
    process = subprocess.Popen(
        [*jib_command(), *args, "-c", "1", "--no-progress"],
        env=jib_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = create_engine(postgres_store)
    try:
        deadline = time.monotonic() + 60
        while postgres_rows(postgres_store) < 20 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before the store could fail"
            time.sleep(0.02)
        # From now on every insert fails, as on a full disk or a revoked grant; reads still work.
        with engine.begin() as connection:
            connection.execute(
                text("ALTER TABLE jib_records ADD CONSTRAINT jib_test_full CHECK (false) NOT VALID")
            )
        gate.set()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    result = Result(process.returncode, stdout, stderr)
    stored = postgres_rows(postgres_store)
    assert_one_clean_error_line(
        result,
        "error: cannot write to the store",
        "jib_test_full",  # the database's own reason
        f"{stored} chats of run broken are stored; finish with --run broken --resume",
    )
    assert result.code == 1
    assert 20 <= stored < total

    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE jib_records DROP CONSTRAINT jib_test_full"))
    engine.dispose()
    resumed = jib(*args, "--resume", "--no-progress")

    assert resumed.code == 0, resumed.stderr
    assert f"{stored} already stored, skipped" in resumed.stderr
    with open_store(postgres_store) as store:
        contents = [d["messages"][-1]["content"] for d in store.iter_dicts(run="broken")]
    assert sorted(contents) == sorted(f"prompt {i}" for i in range(total))


def test_ctrl_c_stops_the_run_keeping_whole_chats_and_says_how_to_resume(
    jib_env: dict[str, str], tmp_path: Path, default_store: Path, stack: ExitStack
) -> None:
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(3000)))
    identifier, _ = stack.enter_context(gated_echo_server(free=100))
    process = subprocess.Popen(
        [*jib_command(), "run", identifier, "-f", str(prompts), "-r", "stop", "-c", "1"],
        env=jib_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while stored_rows(default_store) < 50 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    assert process.returncode == 130
    assert "Traceback" not in stderr
    stored = stored_rows(default_store)
    assert f"interrupted: {stored} chats of run stop are stored" in stderr
    assert "--run stop --resume" in stderr
    with open_store(default_store) as store:
        assert all(c.content == c.messages[-1].content for c in store.query(run="stop"))


def run_in_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run `jib ARGS` with stdout and stderr on a pseudo-terminal; return (code, screen text)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*jib_command(), *args],
        env={**env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_renders_in_a_terminal(
    jib_env: dict[str, str], tmp_path: Path, prompts_file: Path
) -> None:
    code, screen = run_in_terminal(
        ["run", "echo!demo", "-f", str(prompts_file), "-r", "tty"], jib_env, tmp_path
    )

    assert code == 0, screen
    assert "━" in screen  # the bar
    assert "8/8" in screen
    assert "chats/s" in screen  # the rate column
    assert "eta" in screen
    assert "Summary" in screen
