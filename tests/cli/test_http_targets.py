"""`jib run` and `jib chat` against real targets described by a spec file: a chatbot behind a
form login (`steps:`), one that keeps the conversation (`session:`), and streaming ones
(`response.stream`). The targets are the example server's `/bot/…` routes, on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jib.storage import open_store
from tests.cli.conftest import JibRunner, jib_command
from tests.generator.http.server import RunningServer, serve
from tests.generator.http.test_real_targets import conversation_spec, login_spec, stream_spec


@pytest.fixture(scope="module")
def _targets() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


@pytest.fixture
def targets(_targets: RunningServer) -> RunningServer:
    _targets.state.reset()
    return _targets


def write_spec(folder: Path, name: str, spec: dict[str, object]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_jib_run_logs_in_with_steps_and_logs_in_again_once_when_the_session_expires(
    jib: JibRunner, targets: RunningServer, tmp_path: Path, default_store: Path
) -> None:
    targets.state.targets.expire_after = 40
    spec = write_spec(tmp_path, "login-bot", login_spec(targets.url))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"question {i}\n" for i in range(100)))
    identifier = f"http!login-bot,spec=@{spec},api_key=env:BOT_PASSWORD,max_connections=20"

    result = jib(
        "run", identifier, "-f", str(prompts), "-r", "login", "--no-progress",
        env_update={"BOT_PASSWORD": "hunter2"},
    )  # fmt: skip

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        chats = store.query(run="login")
    assert sorted(chat.content for chat in chats) == sorted(
        f"Bot: question {i}" for i in range(100)
    )
    assert targets.state.targets.logins == 2
    raw = b"".join(path.read_bytes() for path in default_store.parent.iterdir())
    assert b"hunter2" not in raw
    assert b"sid-" not in raw  # the session cookie is not stored with the chats


def test_jib_chat_continue_resumes_the_servers_conversation(
    jib: JibRunner, targets: RunningServer, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, "conv-bot", conversation_spec(targets.url))
    identifier = f"http!conv-bot,spec=@{spec}"

    answers = [jib("chat", identifier, "turn 1")]
    answers += [jib("chat", "--continue", f"turn {n}") for n in range(2, 6)]
    answers.append(jib("chat", identifier, "another chat"))

    assert [a.code for a in answers] == [0] * 6, [a.stderr for a in answers]
    assert answers[4].stdout.strip() == "turn 5: turn 5 (9 kept)"
    turns = targets.state.targets.turns
    first_id = turns[1]["conversation_id"]
    assert first_id.startswith("conv-")
    assert [t["conversation_id"] for t in turns] == ["", *[first_id] * 4, ""]
    assert [t["messages"] for t in turns[1:5]] == [
        [{"role": "user", "content": f"turn {n}"}] for n in range(2, 6)
    ]
    assert answers[5].stdout.strip() == "turn 1: another chat (1 kept)"
    shown = jib("log", "--json", "-n", "1")
    assert shown.code == 0, shown.stderr
    [last] = json.loads(shown.stdout)
    assert last["metadata"]["session"]["id"] not in ("", first_id)


def _read_into(stream: object, buffer: bytearray, lock: threading.Lock) -> None:
    read = stream.read1  # type: ignore[attr-defined]
    while chunk := read(1024):
        with lock:
            buffer.extend(chunk)


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_jib_chat_prints_the_first_delta_before_the_last_is_sent(
    jib_env: dict[str, str], targets: RunningServer, tmp_path: Path, kind: str
) -> None:
    bot = targets.state.targets
    bot.hold_last = True
    spec = write_spec(tmp_path, f"{kind}-bot", stream_spec(targets.url, kind))
    process = subprocess.Popen(
        [*jib_command(), "chat", "--no-store", f"http!{kind}-bot,spec=@{spec}", "hello"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=jib_env,
        cwd=tmp_path,
    )
    printed = bytearray()
    lock = threading.Lock()
    reader = threading.Thread(target=_read_into, args=(process.stdout, printed, lock), daemon=True)
    reader.start()
    try:
        seen_first = False
        for _ in range(6000):  # the process starts slowly on a busy machine: wait for output
            with lock:
                seen_first = printed.startswith(b"You ")
            if seen_first or process.poll() is not None:
                break
            time.sleep(0.01)
        last_sent_when_printed = bot.last_sent.is_set()
        bot.release.set()
        process.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        bot.release.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert seen_first, (bytes(printed), stderr)
    assert last_sent_when_printed is False
    assert process.returncode == 0, stderr
    assert bytes(printed) == b"You said: hello\n"
